/**
 * `wgit diff --html`: one self-contained page (no network: the chart is
 * inline SVG, the table sorts with a few lines of inline script, a content
 * security policy forbids every fetch) with the summary, a per-layer chart of
 * the relative change (one line per kind of weight) and every tensor in a
 * sortable table.
 */
import type { DiffReport, TensorDiff } from './compute.js';
import { TENSOR_KINDS, type TensorKind } from './layers.js';

const COLORS: Record<TensorKind, string> = {
  attention: '#1f77b4',
  mlp: '#d62728',
  norm: '#2ca02c',
  embedding: '#9467bd',
  other: '#7f7f7f',
};

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const sci = (x: number | null) => (x === null ? '–' : x === 0 ? '0' : x.toExponential(3));
const pct = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(1)}%`);
/** Sort key of a numeric cell: missing values sort last either way (see the script). */
const key = (x: number | null) => (x === null || Number.isNaN(x) ? '' : String(x));

/** The per-layer chart: x the block index, y ‖Δ‖/‖A‖ of each kind of weight in that block. */
function chart(report: DiffReport): string {
  const W = 760;
  const H = 300;
  const M = { l: 70, r: 130, t: 20, b: 40 };
  const layers = report.layers.filter((l) => l.layer !== null);
  const series = TENSOR_KINDS.map((kind) => ({
    kind,
    points: layers
      .map((l) => ({ layer: l.layer as number, y: l.kinds[kind]?.relChange ?? null }))
      .filter((p): p is { layer: number; y: number } => p.y !== null && Number.isFinite(p.y)),
  })).filter((s) => s.points.length > 0);
  if (series.length === 0) return '<p class="note">No tensor sits in a numbered block: no per-layer chart.</p>';
  const xs = layers.map((l) => l.layer as number);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const yMax = Math.max(...series.flatMap((s) => s.points.map((p) => p.y)), 0) || 1;
  const px = (x: number) => M.l + (x1 === x0 ? (W - M.l - M.r) / 2 : ((x - x0) / (x1 - x0)) * (W - M.l - M.r));
  const py = (y: number) => H - M.b - (y / yMax) * (H - M.t - M.b);
  const out: string[] = [
    `<svg id="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="relative change per layer">`,
    `<line x1="${M.l}" y1="${H - M.b}" x2="${W - M.r}" y2="${H - M.b}" stroke="#444"/>`,
    `<line x1="${M.l}" y1="${M.t}" x2="${M.l}" y2="${H - M.b}" stroke="#444"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const y = (yMax * i) / 4;
    out.push(
      `<text x="${M.l - 6}" y="${py(y) + 4}" text-anchor="end" class="tick">${esc(sci(y))}</text>`,
      `<line x1="${M.l}" y1="${py(y)}" x2="${W - M.r}" y2="${py(y)}" stroke="#ddd"/>`,
    );
  }
  const step = Math.max(1, Math.ceil(xs.length / 16));
  for (const [i, x] of xs.entries())
    if (i % step === 0 || i === xs.length - 1)
      out.push(`<text x="${px(x)}" y="${H - M.b + 16}" text-anchor="middle" class="tick">${x}</text>`);
  out.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 4}" text-anchor="middle">layer</text>`);
  for (const [i, s] of series.entries()) {
    const c = COLORS[s.kind];
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${px(p.layer).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1.5" class="series" data-kind="${s.kind}"/>`);
    for (const p of s.points)
      out.push(
        `<circle cx="${px(p.layer).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${c}" class="point" data-kind="${s.kind}" data-layer="${p.layer}"><title>${s.kind}, layer ${p.layer}: ${esc(sci(p.y))}</title></circle>`,
      );
    out.push(
      `<rect x="${W - M.r + 12}" y="${M.t + i * 18}" width="10" height="10" fill="${c}"/>`,
      `<text x="${W - M.r + 28}" y="${M.t + i * 18 + 9}">${s.kind}</text>`,
    );
  }
  out.push('</svg>');
  return out.join('\n');
}

function shape(d: TensorDiff): string {
  const side = (s: 'a' | 'b') => (d.shape[s] ? `${d.dtype[s]}[${d.shape[s]?.join(',')}]` : '–');
  return d.status === 'mismatch' ? `${side('a')} → ${side('b')}` : side(d.shape.a ? 'a' : 'b');
}

function rows(report: DiffReport): string {
  return report.tensors
    .map((d) => {
      const num = (x: number | null, text: string) => `<td class="n" data-value="${key(x)}">${esc(text)}</td>`;
      return [
        '<tr>',
        `<td data-value="${esc(d.name)}">${esc(d.name)}</td>`,
        `<td data-value="${d.status}">${d.status}</td>`,
        `<td data-value="${d.kind}">${d.kind}</td>`,
        num(d.layer, d.layer === null ? '–' : String(d.layer)),
        `<td data-value="${esc(shape(d))}">${esc(shape(d))}</td>`,
        num(d.relChange, sci(d.relChange)),
        num(d.cosine, d.cosine === null ? '–' : d.cosine.toFixed(6)),
        num(d.identicalFraction, pct(d.identicalFraction)),
        num(d.maxAbsDelta, sci(d.maxAbsDelta)),
        num(d.normDelta, sci(d.normDelta)),
        '</tr>',
      ].join('');
    })
    .join('\n');
}

// Sorting: a click on a header sorts by that column (numbers numerically,
// missing values last), a second click reverses it.
const SCRIPT = `
document.querySelectorAll('#tensors th').forEach((th, col) => {
  th.addEventListener('click', () => {
    const tbody = document.querySelector('#tensors tbody');
    const numeric = th.dataset.type === 'n';
    const dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
    document.querySelectorAll('#tensors th').forEach((h) => delete h.dataset.dir);
    th.dataset.dir = dir;
    const sign = dir === 'asc' ? 1 : -1;
    const rows = [...tbody.rows];
    rows.sort((a, b) => {
      const x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      if (x === '' || y === '') return x === y ? 0 : x === '' ? 1 : -1;
      return sign * (numeric ? Number(x) - Number(y) : x < y ? -1 : x > y ? 1 : 0);
    });
    for (const r of rows) tbody.appendChild(r);
  });
});
`;

export interface DiffHtmlOptions {
  /** How A and B were named on the command line. */
  a: string;
  b: string;
}

/** The whole page as one string. */
export function diffHtml(report: DiffReport, opts: DiffHtmlOptions): string {
  const t = report.totals;
  const title = `wgit diff ${opts.a} ${opts.b}`;
  const summary: [string, string][] = [
    ['tensors', String(t.tensors + t.mismatched + t.onlyA + t.onlyB)],
    ['changed', String(t.changed)],
    ['identical', String(t.identical)],
    ['shape or dtype mismatch', String(t.mismatched)],
    [`only in ${opts.a}`, String(t.onlyA)],
    [`only in ${opts.b}`, String(t.onlyB)],
    ['relative change ‖Δ‖/‖A‖ (tensors read)', sci(t.relChange)],
    ['cosine (tensors read)', t.cosine === null ? '–' : t.cosine.toFixed(6)],
    ['elements bit-identical', pct(t.elements ? t.identicalElements / t.elements : null)],
    [
      'side files added / removed / changed',
      `${report.sideFiles.added.length} / ${report.sideFiles.removed.length} / ${report.sideFiles.changed.length}`,
    ],
  ];
  const heads: [string, 's' | 'n'][] = [
    ['tensor', 's'],
    ['status', 's'],
    ['kind', 's'],
    ['layer', 'n'],
    ['dtype[shape]', 's'],
    ['‖Δ‖/‖A‖', 'n'],
    ['cosine', 'n'],
    ['bit-identical', 'n'],
    ['max |Δ|', 'n'],
    ['‖Δ‖', 'n'],
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>${esc(title)}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[data-dir=asc]::after { content: ' ▲'; }
th[data-dir=desc]::after { content: ' ▼'; }
.tick { font-size: 11px; fill: #555; }
.note { color: #666; }
</style>
</head>
<body>
<h1>${esc(opts.b)} vs ${esc(opts.a)}</h1>
<table id="summary">${summary.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
<h2>Relative change per layer</h2>
${chart(report)}
<p class="note">Per block, ‖Δ‖/‖A‖ over the tensors of each kind that were read; tensors whose stored records are identical are unchanged and not read.</p>
<h2>Tensors</h2>
<table id="tensors">
<thead><tr>${heads.map(([h, type]) => `<th data-type="${type}">${esc(h)}</th>`).join('')}</tr></thead>
<tbody>
${rows(report)}
</tbody>
</table>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
