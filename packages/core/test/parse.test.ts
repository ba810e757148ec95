import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDecimal, parseDecimalList, parseInteger, parseTimestamp } from '../src/index.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? 'no code';
  }
  return 'no error';
};

describe('parseDecimal', () => {
  const o = { what: '--lambda' };
  const accepted: [string, number][] = [
    ['0', 0],
    ['1', 1],
    ['-2', -2],
    ['+3', 3],
    ['0.5', 0.5],
    ['.5', 0.5],
    ['-.25', -0.25],
    ['5.', 5],
    ['1e3', 1000],
    ['1E-3', 0.001],
    ['2.5e+2', 250],
    ['-0', 0],
    ['1e-400', 0],
  ];
  for (const [text, want] of accepted)
    it(`accepts ${JSON.stringify(text)}`, () => assert.equal(parseDecimal(text, o), want));
  const refused = [
    '',
    ' ',
    '\t',
    ' 1',
    '1 ',
    '0x10',
    '0X10',
    '0o10',
    '0b10',
    '010',
    '00.5',
    'Infinity',
    '-Infinity',
    'NaN',
    '1e400',
    '1_000',
    '1,5',
    '.',
    '-',
    '+',
    'e5',
    '1e',
    '1e+',
    '١',
    '0.5.5',
    '--1',
  ];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)} with E_BAD_PARAM`, () =>
      assert.equal(
        code(() => parseDecimal(text, o)),
        'E_BAD_PARAM',
      ));
  }
  it('checks bounds and names what it parsed', () => {
    assert.equal(parseDecimal('1', { what: '--drop', min: 0, max: 1 }), 1);
    assert.throws(() => parseDecimal('1.5', { what: '--drop', min: 0, max: 1 }), {
      code: 'E_BAD_PARAM',
      message: '--drop must be at most 1, got "1.5"',
    });
    assert.throws(
      () => parseDecimal('0x10', { what: 'WGIT_X', code: 'E_BAD_ENV', data: { name: 'WGIT_X' } }),
      (e) => {
        const w = e as { code: string; message: string; data: Record<string, unknown> };
        return (
          w.code === 'E_BAD_ENV' &&
          w.message === 'WGIT_X must be a decimal number, got "0x10"' &&
          w.data.name === 'WGIT_X' &&
          w.data.value === '0x10'
        );
      },
    );
  });
});

describe('parseInteger', () => {
  const o = { what: '--seed' };
  const accepted: [string, number][] = [
    ['0', 0],
    ['7', 7],
    ['-7', -7],
    ['+7', 7],
    ['4294967295', 4294967295],
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
  ];
  for (const [text, want] of accepted)
    it(`accepts ${JSON.stringify(text)}`, () => assert.equal(parseInteger(text, o), want));
  const refused = ['', ' ', '1.0', '1e3', '0x10', '010', '1 ', ' 1', '9007199254740993', 'Infinity', '1_0', '½'];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)}`, () =>
      assert.equal(
        code(() => parseInteger(text, o)),
        'E_BAD_PARAM',
      ));
  }
  it('checks bounds', () => {
    assert.equal(
      code(() => parseInteger('0', { what: '-n', min: 1 })),
      'E_BAD_PARAM',
    );
    assert.equal(
      code(() => parseInteger('257', { what: 'WGIT_THREADS', max: 256, code: 'E_BAD_ENV' })),
      'E_BAD_ENV',
    );
  });
});

describe('parseDecimalList', () => {
  const o = { what: '--weights' };
  const accepted: [string | string[], number[]][] = [
    ['1', [1]],
    ['1,2', [1, 2]],
    ['0.7, 0.9', [0.7, 0.9]],
    [' 1 , 2 ', [1, 2]],
    [
      ['1', '2,3'],
      [1, 2, 3],
    ],
  ];
  for (const [text, want] of accepted) {
    it(`accepts ${JSON.stringify(text)}`, () => assert.deepEqual(parseDecimalList(text, o), want));
  }
  const refused: (string | string[])[] = [
    '',
    ' ',
    ',',
    '1,,2',
    '1,2,',
    ',1',
    '1 2',
    '1;2',
    '0x1,2',
    '1,Infinity',
    [],
    ['1', ''],
  ];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)}`, () =>
      assert.equal(
        code(() => parseDecimalList(text, o)),
        'E_BAD_PARAM',
      ));
  }
});

describe('parseTimestamp', () => {
  const o = { what: 'WGIT_AUTHOR_DATE' };
  const accepted: [string | number, number][] = [
    ['0', 0],
    ['1700000000', 1700000000],
    [1700000000, 1700000000],
    ['2024', 2024], // digits alone are unix seconds
    ['1970-01-01', 0],
    ['2024-02-29', Date.UTC(2024, 1, 29) / 1000],
    ['2024-03-07T10:00', Date.UTC(2024, 2, 7, 10) / 1000],
    ['2024-03-07T10:00:05', Date.UTC(2024, 2, 7, 10, 0, 5) / 1000],
    ['2024-03-07T10:00:05.999Z', Date.UTC(2024, 2, 7, 10, 0, 5) / 1000],
    ['2024-03-07T10:00:00+02', Date.UTC(2024, 2, 7, 8) / 1000],
    ['2024-03-07T10:00:00+0200', Date.UTC(2024, 2, 7, 8) / 1000],
    ['2024-03-07T10:00:00-05:30', Date.UTC(2024, 2, 7, 15, 30) / 1000],
    ['9999-12-31T23:59:59Z', 253402300799],
  ];
  for (const [text, want] of accepted) {
    it(`accepts ${JSON.stringify(text)}`, () => assert.equal(parseTimestamp(text, o), want));
  }
  const refused: (string | number)[] = [
    '',
    '-1',
    -1,
    1.5,
    Number.NaN,
    '01700000000',
    '1e9',
    ' 1700000000',
    'March 7',
    'March 7, 2024',
    'Thu Mar 07 2024',
    '2024-03',
    '2024-3-07',
    '24-03-07',
    '2023-02-29',
    '2024-13-01',
    '2024-00-10',
    '2024-03-00',
    '2024-03-07T24:00',
    '2024-03-07T10',
    '2024-03-07T10:00:00ZZ',
    '2024-03-07T10:00:00+2',
    '2024-03-07t10:00:00z',
    '2024-03-07 10:00',
    '1969-12-31T23:59:59Z',
    '1970-01-01T00:30:00+01:00',
    '0050-01-01',
    '10000-01-01',
    '253402300800',
  ];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)} with E_BAD_DATE`, () =>
      assert.equal(
        code(() => parseTimestamp(text, o)),
        'E_BAD_DATE',
      ));
  }
});
