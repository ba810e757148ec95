/**
 * `wgit diff --html` in a real browser: Debian's chromium driven by
 * playwright-core. CI installs chromium (.ci/run); elsewhere, without it, the
 * test is skipped with a note (CI=true makes a missing browser a failure).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { bf16Weights, fineTune, type RawTensor, writeShardedFolder } from '../../packages/store/test/helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'packages', 'cli', 'bin', 'run.js');
const BROWSER = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
if (!BROWSER && process.env.CI === 'true')
  throw new Error('CI needs chromium for the HTML report test (.ci/run installs it)');

function wgit(cwd: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, WGIT_AUTHOR_DATE: '1700000000' },
  });
  return { status: r.status, json: args.includes('--json') ? JSON.parse(r.stdout) : null, stderr: r.stderr };
}

describe('wgit diff --html in a browser', { skip: BROWSER ? false : 'no chromium here (CI installs it)' }, () => {
  let dir: string;
  let page: string;
  let report: any;
  const LAYERS = 4;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-html-'));
    const base: RawTensor[] = [];
    const ft: RawTensor[] = [];
    const add = (name: string, seed: number, frac: number) => {
      const data = bf16Weights(16 * 24, seed);
      base.push({ name, dtype: 'BF16', shape: [16, 24], data });
      ft.push({ name, dtype: 'BF16', shape: [16, 24], data: frac ? fineTune(data, frac, seed + 1000) : data });
    };
    add('model.embed_tokens.weight', 1, 0.02);
    for (let l = 0; l < LAYERS; l++) {
      add(`model.layers.${l}.self_attn.q_proj.weight`, 10 + l, 0.05 * (l + 1));
      add(`model.layers.${l}.mlp.up_proj.weight`, 20 + l, 0.1);
      // the last block's norm is unchanged: its point sits at 0
      add(`model.layers.${l}.input_layernorm.weight`, 30 + l, l === LAYERS - 1 ? 0 : 0.2);
    }
    add('lm_head.weight', 2, 0.02);
    writeShardedFolder(path.join(dir, 'base'), [base], { 'config.json': '{}' });
    writeShardedFolder(path.join(dir, 'ft'), [ft], { 'config.json': '{}' });
    page = path.join(dir, 'out', 'diff <&> page.html');
    fs.mkdirSync(path.dirname(page));
    const r = wgit(dir, 'diff', './base', './ft', '--html', page, '--json');
    assert.equal(r.status, 0, r.stderr);
    report = r.json;
    assert.equal(report.html, page);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('loads offline with no console errors, one chart point per layer and kind, and sorts its table', async () => {
    const browser = await chromium.launch({ executablePath: BROWSER, args: ['--no-sandbox'] });
    try {
      const ctx = await browser.newContext();
      const tab = await ctx.newPage();
      const problems: string[] = [];
      tab.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
      });
      tab.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      const requests: string[] = [];
      tab.on('request', (r) => requests.push(r.url()));
      await tab.goto(`file://${page}`);
      await tab.waitForLoadState('load');
      assert.deepEqual(problems, []);
      assert.deepEqual(
        requests.filter((u) => !u.startsWith('file://')),
        [],
        'the page loads nothing from the network',
      );

      // One point per layer on each kind's line; the unchanged last norm is not a point.
      const points = await tab.$$eval('#chart circle.point', (cs) =>
        cs.map((c) => [c.getAttribute('data-kind'), Number(c.getAttribute('data-layer'))]),
      );
      const layersOf = (kind: string) => points.filter((p) => p[0] === kind).map((p) => p[1]);
      assert.deepEqual(layersOf('attention'), [0, 1, 2, 3]);
      assert.deepEqual(layersOf('mlp'), [0, 1, 2, 3]);
      assert.deepEqual(layersOf('norm'), [0, 1, 2, 3], 'a layer whose norm is unchanged has relative change 0');
      assert.equal(await tab.$$eval('#chart path.series', (ps) => ps.length), 3);

      // Sorting by relative change: descending on the first click, ascending on the second.
      const names = () =>
        tab.$$eval('#tensors tbody tr', (rs) => rs.map((r) => r.firstElementChild?.textContent ?? null));
      const rel = new Map<string, number>(report.tensors.map((t: any) => [t.name, t.relChange]));
      const expected = [...rel.keys()].sort((x, y) => rel.get(y)! - rel.get(x)! || 0);
      await tab.click('#tensors th:nth-child(6)');
      assert.deepEqual(
        (await names()).map((n) => rel.get(n as string)),
        expected.map((n) => rel.get(n)),
      );
      await tab.click('#tensors th:nth-child(6)');
      assert.deepEqual(
        (await names()).map((n) => rel.get(n as string)),
        [...expected].reverse().map((n) => rel.get(n)),
      );
      // Names are text, never markup.
      assert.equal(await tab.title(), `wgit diff ./base ./ft`);
    } finally {
      await browser.close();
    }
  });
});
