import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { parseFilter, parseFilters, type Selector } from '../src/index.js';

/** The single alternative's selectors, as plain objects (regexps reduced to their source and flags). */
function selectorsOf(input: string): object[] {
  const alternatives = parseFilter(input).alternatives;
  assert.equal(alternatives.length, 1);
  return (alternatives[0] ?? []).map((s: Selector) => ({
    fieldpath: [...s.fieldpath],
    operator: s.operator,
    value: s.value,
    ...(s.regexp ? { regexp: `/${s.regexp.source}/${s.regexp.flags}` } : {}),
  }));
}

/** Asserts that parsing fails with ErrInvalidArgument at `position` with a message matching `message`. */
function assertParseError(input: string, position: number, message: RegExp): void {
  assert.throws(
    () => parseFilters(['ok', input]),
    (err: unknown) => {
      assert.ok(err instanceof ErrInvalidArgument, `expected ErrInvalidArgument, got ${String(err)}`);
      assert.equal(err.code, 'ERR_INVALID_ARGUMENT');
      assert.match(err.message, /^filters: parse error: \[/);
      assert.match(err.message, message);
      assert.ok(err.message.endsWith(` at ${position}`), err.message);
      assert.deepEqual(err.details, { filter: input, index: 1, position });
      return true;
    },
  );
}

test('every operator', () => {
  assert.deepEqual(selectorsOf('name'), [{ fieldpath: ['name'], operator: 'present', value: '' }]);
  assert.deepEqual(selectorsOf('name==foo'), [{ fieldpath: ['name'], operator: '==', value: 'foo' }]);
  assert.deepEqual(selectorsOf('name!=foo'), [{ fieldpath: ['name'], operator: '!=', value: 'foo' }]);
  assert.deepEqual(selectorsOf('name~=^fo+$'), [{ fieldpath: ['name'], operator: '~=', value: '^fo+$', regexp: '/^fo+$/u' }]);
});

test('comma-separated selectors form one alternative; separate strings are alternatives', () => {
  assert.deepEqual(selectorsOf('type==regular,labels.foo,id!=x'), [
    { fieldpath: ['type'], operator: '==', value: 'regular' },
    { fieldpath: ['labels', 'foo'], operator: 'present', value: '' },
    { fieldpath: ['id'], operator: '!=', value: 'x' },
  ]);
  const f = parseFilters(['a==1', 'b==2,c', '']);
  assert.deepEqual(
    f.alternatives.map((all) => all.map((s) => s.fieldpath.join('.'))),
    [['a'], ['b', 'c'], []],
  );
});

test('field paths: dotted, quoted components, digits and underscores', () => {
  assert.deepEqual(selectorsOf('labels."containerd.io/gc.root"')[0], {
    fieldpath: ['labels', 'containerd.io/gc.root'],
    operator: 'present',
    value: '',
  });
  assert.deepEqual(selectorsOf('labels."a.b"==x')[0], { fieldpath: ['labels', 'a.b'], operator: '==', value: 'x' });
  assert.deepEqual(selectorsOf('labels.a.b==x')[0], { fieldpath: ['labels', 'a', 'b'], operator: '==', value: 'x' });
  assert.deepEqual(selectorsOf('a_1.2B."very complex label"')[0], {
    fieldpath: ['a_1', '2B', 'very complex label'],
    operator: 'present',
    value: '',
  });
  assert.deepEqual(selectorsOf('"quoted top"==v')[0], { fieldpath: ['quoted top'], operator: '==', value: 'v' });
});

test('bare values run to the next comma or space and may hold punctuation', () => {
  assert.deepEqual(selectorsOf('type==source.local'), [{ fieldpath: ['type'], operator: '==', value: 'source.local' }]);
  const values = parseFilter('a==x=y!z,b==sha256:abc/def.g,c==ünï-çødé,d==a"b').alternatives[0]?.map((s) => s.value);
  assert.deepEqual(values, ['x=y!z', 'sha256:abc/def.g', 'ünï-çødé', 'a"b']);
  // containerd refuses a leading "." here; we accept it (`name~=.*` is the common case).
  assert.deepEqual(selectorsOf('a==.b,c~=.*'), [
    { fieldpath: ['a'], operator: '==', value: '.b' },
    { fieldpath: ['c'], operator: '~=', value: '.*', regexp: '/.*/u' },
  ]);
});

test('quoted values and their escapes', () => {
  const value = (input: string): string | undefined => parseFilter(input).alternatives[0]?.[0]?.value;
  assert.equal(value('a=="with, comma and space"'), 'with, comma and space');
  assert.equal(value('a==""'), '');
  assert.equal(value(String.raw`a=="q\"q \\ \a\b\f\n\r\t\v"`), 'q"q \\ \x07\b\f\n\r\t\v');
  assert.equal(value(String.raw`a=="\101\x42\u0043\U0001F600"`), 'ABC😀');
  assert.equal(value('a=="😀,x"'), '😀,x');
});

test('regexp values: bare, "quoted", /slashed/ and |barred|', () => {
  const re = (input: string): RegExp | undefined => parseFilter(input).alternatives[0]?.[0]?.regexp;
  assert.equal(re(String.raw`name~=^v\d+$`)?.source, String.raw`^v\d+$`);
  assert.equal(re('name~="^research-v"')?.source, '^research-v');
  assert.equal(re('name~=/^a.*/')?.source, '^a.*');
  assert.equal(re(String.raw`name~=/a\/b/`)?.source, 'a\\/b');
  assert.equal(re(String.raw`name~=/\\d+/`)?.source, String.raw`\d+`);
  assert.equal(re('name~=|^/usr/|')?.source, '^\\/usr\\/');
  assert.equal(re('name~=/a,b c/')?.source, 'a,b c');
});

test('regexps: Go flag groups become RegExp flags; RE2 identity escapes are accepted', () => {
  const re = (input: string): RegExp | undefined => parseFilter(input).alternatives[0]?.[0]?.regexp;
  const insensitive = re('name~=(?i)^foo');
  assert.equal(insensitive?.source, '^foo');
  assert.equal(insensitive?.flags, 'iu');
  assert.equal(re('name~=(?is)a.b')?.flags, 'isu');
  assert.ok(re(String.raw`name~=a\_b\-c`)?.test('a_b-c'));
  assert.ok(re(String.raw`name~=^\p{Lu}`)?.test('Élan'));
});

test('space may precede a field, an operator or a value', () => {
  assert.deepEqual(selectorsOf(' name == foo, labels.x'), [
    { fieldpath: ['name'], operator: '==', value: 'foo' },
    { fieldpath: ['labels', 'x'], operator: 'present', value: '' },
  ]);
  assert.deepEqual(selectorsOf('labels. "a"~= "b"'), [{ fieldpath: ['labels', 'a'], operator: '~=', value: 'b', regexp: '/b/u' }]);
});

test('empty inputs match everything', () => {
  assert.deepEqual(parseFilters([]).alternatives, [[]]);
  assert.deepEqual(parseFilters(['']).alternatives, [[]]);
  assert.deepEqual(parseFilter('').alternatives, [[]]);
});

test('errors: missing or bad pieces, with the filter and the position', () => {
  assertParseError('labels."a" ==', 13, /^filters: parse error: \[labels\."a" ==\]: expected a value or a quoted string, found end of filter at 13$/);
  assertParseError('name==,x', 6, /\[name== >\|,\|< x\]: expected a value or a quoted string, found ","/);
  assertParseError('a==b,', 5, /expected a field name or a quoted string, found end of filter/);
  assertParseError(',a', 0, /\[ >\|,\|< a\]: expected a field name or a quoted string, found ","/);
  assertParseError('a..b', 2, /expected a field name or a quoted string, found "\."/);
  assertParseError('.a', 0, /expected a field name/);
  assertParseError('-a', 0, /expected a field name or a quoted string, found "-"/);
  assertParseError('name=foo', 4, /unsupported operator "=", expected "==", "!=" or "~="/);
  assertParseError('name===foo', 4, /unsupported operator "==="/);
  assertParseError('name<foo', 4, /expected an operator \("==", "!=" or "~="\) or "," or end of filter, found "<"/);
  assertParseError('a==!b', 1, /unsupported operator "==!"/);
  assertParseError('a==~b', 1, /unsupported operator "==~"/);
  assertParseError(' ', 1, /expected a field name or a quoted string, found end of filter/);
});

test('errors: stray space', () => {
  assertParseError('name==foo ', 9, /\[name==foo >\| \|< \]: unexpected space/);
  assertParseError('a ,b', 1, /unexpected space/);
  assertParseError('labels.foo ', 10, /unexpected space/);
  assertParseError('a==b c', 4, /unexpected space/);
});

test('errors: quoting', () => {
  assertParseError('labels."a', 7, /\[labels\. >\|"\|< a\]: quoted literal not terminated/);
  assertParseError('a=="x\ny"', 3, /quoted literal not terminated/);
  assertParseError('a=="x\\', 3, /quoted literal not terminated/);
  assertParseError(String.raw`a=="x\q"`, 5, /illegal escape sequence "\\q"/);
  assertParseError(String.raw`a=="\x4"`, 4, /illegal escape sequence "\\x4"": expected 2 hex digits/);
  assertParseError(String.raw`a=="\400"`, 4, /not a valid character/);
  assertParseError(String.raw`a=="\ud800"`, 4, /not a valid character/);
  assertParseError(String.raw`a=="\U00110000"`, 4, /not a valid character/);
  assertParseError(String.raw`a=="\/"`, 4, /illegal escape sequence/);
  assertParseError(String.raw`a~=/\d/`, 4, /illegal escape sequence "\\d"/);
  assertParseError('a==/x/', 3, /only ~= takes \/…\/-quoted values/);
  assertParseError('a!=|x|', 3, /only ~= takes \|…\|-quoted values/);
  assertParseError('labels./x/', 7, /field names may only be quoted with '"'/);
  assertParseError('"a"b', 3, /expected an operator/);
  assertParseError('a=="x"y', 6, /unexpected "y", expected "," or end of filter/);
});

test('errors: invalid regexps', () => {
  assertParseError('name~=[', 6, /invalid regexp "\[": .*[Uu]nterminated character class/);
  assertParseError('name~="a("', 6, /invalid regexp "a\("/);
  assertParseError('name~=(?U)a', 6, /unsupported flag "U"/);
});

test('the error names the failing string among several', () => {
  assert.throws(
    () => parseFilters(['a==1', 'b==2', 'c==']),
    (err: unknown) =>
      err instanceof ErrInvalidArgument &&
      err.message.startsWith('filters: parse error: [c==]:') &&
      err.details['index'] === 2,
  );
});
