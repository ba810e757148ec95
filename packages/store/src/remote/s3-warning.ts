/**
 * The AWS SDK warns, once per process, that its releases after January 2027
 * need Node 22. That one warning (and nothing else) is dropped: it is about
 * future SDK versions, not this build, and would otherwise reach users'
 * stderr on every S3 command.
 */
const emit = process.emitWarning.bind(process) as (...a: unknown[]) => void;
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const name =
    typeof warning === 'string'
      ? typeof rest[0] === 'string'
        ? rest[0]
        : (rest[0] as { type?: string })?.type
      : warning.name;
  const text = typeof warning === 'string' ? warning : warning.message;
  if (name === 'NodeVersionSupportWarning' || /AWS SDK for JavaScript \(v3\)[\s\S]*require node >=22/.test(text))
    return;
  emit(warning, ...rest);
}) as typeof process.emitWarning;
