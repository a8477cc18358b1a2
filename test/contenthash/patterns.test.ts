/** `.dockerignore`-style patterns as Docker's patternmatcher evaluates them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { PatternMatcher, parseDockerignore } from '@buildcache/contenthash';

const m = (patterns: string[], path: string): boolean => new PatternMatcher(patterns).matches(path);

test('* and ? stay within a component; ** spans any number of them', () => {
  assert.equal(m(['*.go'], 'main.go'), true);
  assert.equal(m(['*.go'], 'src/main.go'), false, '* does not cross /');
  assert.equal(m(['**/*.go'], 'main.go'), true, '**/ matches zero directories');
  assert.equal(m(['**/*.go'], 'a/b/c/main.go'), true);
  assert.equal(m(['src/**'], 'src/a/b'), true);
  assert.equal(m(['a/**/z'], 'a/z'), true);
  assert.equal(m(['a/**/z'], 'a/b/c/z'), true);
  assert.equal(m(['a/**/z'], 'b/a/z'), false);
  assert.equal(m(['?.txt'], 'a.txt'), true);
  assert.equal(m(['?.txt'], 'ab.txt'), false);
  assert.equal(m(['[a-c].txt'], 'b.txt'), true);
  assert.equal(m(['[!a-c].txt'], 'b.txt'), false);
  assert.equal(m(['\\*.txt'], '*.txt'), true);
  assert.equal(m(['\\*.txt'], 'a.txt'), false);
});

test('a pattern matching a directory matches what is below it; a leading / is the root', () => {
  assert.equal(m(['build'], 'build/out/x.o'), true);
  assert.equal(m(['/build'], 'build/x.o'), true);
  assert.equal(m(['/build'], 'src/build/x.o'), false);
  assert.equal(m(['./build/'], 'build'), true, 'cleaned like a path');
  assert.equal(m(['a/../b'], 'b/c'), true);
});

test('! re-includes; the last matching pattern wins', () => {
  assert.equal(m(['*.md', '!README.md'], 'README.md'), false);
  assert.equal(m(['*.md', '!README.md'], 'CHANGES.md'), true);
  assert.equal(m(['*.md', '!README.md', 'README*'], 'README.md'), true);
  assert.equal(new PatternMatcher(['*.md', '!README.md']).hasNegations, true);
  assert.equal(new PatternMatcher(['*.md']).hasNegations, false);
  assert.equal(new PatternMatcher(['', '  ', '!']).empty, true);
});

test('.dockerignore text: comments and blank lines are skipped; bad patterns are refused by name', () => {
  assert.deepEqual(parseDockerignore('# comment\n\nnode_modules\r\n  !keep  \n*.log\n'), ['node_modules', '!keep', '*.log']);
  assert.throws(() => new PatternMatcher(['[abc']), (err: Error) => err instanceof ErrInvalidArgument && err.message.includes('[abc'));
  assert.throws(() => new PatternMatcher(['trailing\\']), ErrInvalidArgument);
});
