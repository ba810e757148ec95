// placeholder, replaced by the kernel work
export function version(): i32 {
  return 1;
}
