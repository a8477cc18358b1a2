import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adaptObject, fieldsOf, filterOf, formatSelector, MATCH_ALL, parseFilter, parseFilters, type Adaptor } from '../src/index.js';

const records = {
  a: { id: 'a', name: 'alpha', type: 'regular', labels: { 'containerd.io/gc.root': '2024', team: 'x', empty: '' } },
  b: { id: 'b', name: 'beta', type: 'source.local', mutable: true, labels: { team: 'y' } },
  c: { id: 'c', name: 'Gamma', type: 'exec.cachemount', parents: ['a', 'b'] },
  d: { id: 'd' },
};
type Name = keyof typeof records;

/** The ids of the records the filter strings select. */
function select(...filters: string[]): Name[] {
  const filter = parseFilters(filters);
  return (Object.keys(records) as Name[]).filter((name) => filter.match(adaptObject(records[name])));
}

test('==: present and equal', () => {
  assert.deepEqual(select('type==regular'), ['a']);
  assert.deepEqual(select('type==source.local'), ['b']);
  assert.deepEqual(select('labels.team==x'), ['a']);
  assert.deepEqual(select('labels.empty==""'), ['a']);
  assert.deepEqual(select('type==""'), []);
  assert.deepEqual(select('nosuch==x'), []);
});

test('!=: absent fields count as empty', () => {
  assert.deepEqual(select('type!=regular'), ['b', 'c', 'd']);
  assert.deepEqual(select('labels.team!=x'), ['b', 'c', 'd']);
  assert.deepEqual(select('type!=""'), ['a', 'b', 'c']);
});

test('~=: unanchored search; absent fields are searched as empty', () => {
  assert.deepEqual(select('name~=ph'), ['a']);
  assert.deepEqual(select('name~=^[a-z]+a$'), ['a', 'b']);
  assert.deepEqual(select('name~=(?i)^g'), ['c']);
  assert.deepEqual(select('name~=/^(alpha|beta)$/'), ['a', 'b']);
  assert.deepEqual(select('name~=^$'), ['d']);
  assert.deepEqual(select('name~=.*'), ['a', 'b', 'c', 'd']);
  assert.deepEqual(select('type~="^(source|exec)\\\\."'), ['b', 'c']);
});

test('presence', () => {
  assert.deepEqual(select('labels'), [], 'an object at the end of the path is not a value');
  assert.deepEqual(select('labels.team'), ['a', 'b']);
  assert.deepEqual(select('labels.empty'), ['a'], 'an empty label value is present');
  assert.deepEqual(select('labels."containerd.io/gc.root"'), ['a']);
  assert.deepEqual(select('labels.containerd.io'), []);
  assert.deepEqual(select('mutable'), ['b']);
  assert.deepEqual(select('parents'), ['c']);
});

test('AND inside one string, OR across strings', () => {
  assert.deepEqual(select('labels.team,type!=regular'), ['b']);
  assert.deepEqual(select('labels.team,name~=^a,id==a'), ['a']);
  assert.deepEqual(select('labels.team==x,labels.team==y'), []);
  assert.deepEqual(select('labels.team==x', 'labels.team==y'), ['a', 'b']);
  assert.deepEqual(select('type==source.local', 'type==exec.cachemount'), ['b', 'c']);
  // The BuildKit default-GC-policy bug: one comma-joined string is an AND and matches nothing.
  assert.deepEqual(select('type==source.local,type==exec.cachemount'), []);
});

test('empty inputs match everything; an empty string among others matches everything', () => {
  assert.deepEqual(select(), ['a', 'b', 'c', 'd']);
  assert.deepEqual(select(''), ['a', 'b', 'c', 'd']);
  assert.deepEqual(select('id==a', ''), ['a', 'b', 'c', 'd']);
  assert.equal(MATCH_ALL.match(() => undefined), true);
  assert.equal(filterOf([]).match(() => undefined), true);
});

test('the adaptor receives the unquoted field path', () => {
  const seen: string[][] = [];
  const adaptor: Adaptor = (path) => {
    seen.push([...path]);
    return path.join('/');
  };
  assert.equal(parseFilter('labels."a.b"=="labels/a.b",x.y.z,"q q"~=^q').match(adaptor), true);
  assert.deepEqual(seen, [['labels', 'a.b'], ['x', 'y', 'z'], ['q q']]);
});

test('AND stops at the first failing selector, OR at the first matching alternative', () => {
  let calls = 0;
  const adaptor: Adaptor = () => {
    calls++;
    return undefined;
  };
  assert.equal(parseFilters(['a,b,c', 'd']).match(adaptor), false);
  assert.equal(calls, 2);
  calls = 0;
  assert.equal(parseFilters(['a!=x', 'b']).match(adaptor), true);
  assert.equal(calls, 1);
});

test('fieldsOf lists the top-level fields, once each, in order of first use', () => {
  assert.deepEqual(fieldsOf(parseFilters(['type==x,labels."a.b"', 'labels.c,id~=^a', 'type'])), ['type', 'labels', 'id']);
  assert.deepEqual(fieldsOf(parseFilters([])), []);
  assert.deepEqual(fieldsOf(parseFilters(['', '"quoted field"'])), ['quoted field']);
});

test('formatSelector writes selectors back in a form that parses to the same thing', () => {
  const input = ['labels."a.b"==x', 'name~=/^a\\\\d/', 'x!="with, comma"', 'flag', 'v=="\\n"'];
  for (const text of input) {
    const [selector] = parseFilter(text).alternatives[0] ?? [];
    assert.ok(selector);
    const again = parseFilter(formatSelector(selector)).alternatives[0]?.[0];
    assert.deepEqual(again, selector, `${text} → ${formatSelector(selector)}`);
  }
  assert.equal(String(parseFilters(['a==1,b', 'c'])), 'a=="1",b | c');
});
