// A second node:test reporter beside TAP: it prints nothing while the run goes on, then, at the
// very end, every failed test again with its file and the first lines of its error. CI shows only
// the tail of a run's output, and a failure in the middle of 1,400 tests was invisible there.
// Lines are TAP comments ("# ..."), so the TAP stream's counts are unchanged.

const MAX_ERROR_LINES = 12;

function errorLines(error) {
  const cause = error?.cause ?? error;
  const text = cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
  return text.split('\n').slice(0, MAX_ERROR_LINES);
}

export default async function* failuresReporter(source) {
  const failures = [];
  const parents = []; // names of the suites/tests enclosing the current nesting level
  for await (const event of source) {
    if (event.type === 'test:start') {
      parents[event.data.nesting] = event.data.name;
      parents.length = event.data.nesting + 1;
    } else if (event.type === 'test:fail') {
      const { name, nesting, file, details } = event.data;
      // A suite fails when a test in it fails: report the test, not every enclosing suite again.
      if (details?.type === 'suite' || details?.error?.failureType === 'subtestsFailed') continue;
      failures.push({ path: [...parents.slice(0, nesting), name].join(' > '), file, error: details?.error });
    }
  }
  if (failures.length === 0) return;
  yield `# ---- ${failures.length} failed test${failures.length === 1 ? '' : 's'} (repeated from above) ----\n`;
  for (const f of failures) {
    yield `# FAILED: ${f.path}\n#   file: ${f.file ?? '?'}\n`;
    for (const line of errorLines(f.error)) yield `#   ${line}\n`;
  }
}
