import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adaptObject } from '../src/index.js';

test('adaptObject: top-level and nested fields', () => {
  const see = adaptObject({ name: 'n', nested: { deep: { leaf: 'v' } }, labels: { k: 'v' } });
  assert.equal(see(['name']), 'n');
  assert.equal(see(['labels', 'k']), 'v');
  assert.equal(see(['nested', 'deep', 'leaf']), 'v');
  assert.equal(see(['labels', 'missing']), undefined);
  assert.equal(see(['name', 'deeper']), undefined);
  assert.equal(see(['missing', 'x']), undefined);
  assert.equal(see([]), undefined);
});

test('adaptObject: dotted keys are found from joined or quoted paths, as containerd labels are', () => {
  const see = adaptObject({ labels: { 'containerd.io/gc.root': 'r', 'a.b.c': 'abc' }, a: { b: 'direct' } });
  assert.equal(see(['labels', 'containerd.io/gc.root']), 'r');
  assert.equal(see(['labels', 'a', 'b', 'c']), 'abc');
  assert.equal(see(['labels', 'a.b', 'c']), 'abc');
  assert.equal(see(['a', 'b']), 'direct');
  assert.equal(adaptObject({ 'x.y': 'top' })(['x', 'y']), 'top');
});

test('adaptObject: value conversions', () => {
  const see = adaptObject({
    empty: '',
    zero: 0,
    big: 12n,
    yes: true,
    no: false,
    nil: null,
    undef: undefined,
    when: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)),
    invalid: new Date(Number.NaN),
    parents: ['p1', 'p2'],
    none: [],
    obj: { a: 1 },
    fn: () => 1,
  });
  assert.equal(see(['empty']), '');
  assert.equal(see(['zero']), '0');
  assert.equal(see(['big']), '12');
  assert.equal(see(['yes']), 'true');
  assert.equal(see(['no']), undefined);
  assert.equal(see(['nil']), undefined);
  assert.equal(see(['undef']), undefined);
  assert.equal(see(['when']), '2024-01-02T03:04:05.000Z');
  assert.equal(see(['invalid']), undefined);
  assert.equal(see(['parents']), 'p1;p2');
  assert.equal(see(['none']), undefined);
  assert.equal(see(['obj']), undefined);
  assert.equal(see(['fn']), undefined);
});

test('adaptObject: Maps, own properties only, non-objects', () => {
  const see = adaptObject({ labels: new Map([['k', 'v'], ['a.b', 'ab']]) });
  assert.equal(see(['labels', 'k']), 'v');
  assert.equal(see(['labels', 'a', 'b']), 'ab');
  assert.equal(see(['labels', 'size']), undefined);
  const plain = adaptObject({});
  assert.equal(plain(['constructor']), undefined);
  assert.equal(plain(['toString']), undefined);
  assert.equal(plain(['__proto__']), undefined);
  assert.equal(adaptObject(null)(['x']), undefined);
  assert.equal(adaptObject('str')(['length']), undefined);
});
