import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { faultFor, seededRandom, type FaultSettings } from '../../agent/traffic';

describe('fault injection', () => {
  it('delays and aborts at their configured rates, independently (±3% over 2,000 requests)', () => {
    const fault: FaultSettings = { delay: { percentage: 10, fixedDelayMs: 2000 }, abort: { percentage: 5, httpStatus: 503 } };
    const random = seededRandom(2024);
    let delayed = 0;
    let aborted = 0;
    let both = 0;
    for (let i = 0; i < 2000; i++) {
      const f = faultFor(fault, random);
      if (f.delayMs !== undefined) {
        assert.equal(f.delayMs, 2000);
        delayed++;
      }
      if (f.abortStatus !== undefined) {
        assert.equal(f.abortStatus, 503);
        aborted++;
      }
      if (f.delayMs !== undefined && f.abortStatus !== undefined) both++;
    }
    assert.ok(Math.abs(delayed - 200) <= 60, `delayed ${delayed} of 2000, expected 10% ± 3%`);
    assert.ok(Math.abs(aborted - 100) <= 60, `aborted ${aborted} of 2000, expected 5% ± 3%`);
    assert.ok(both <= 30, `both ${both}: independent draws give about 0.5%`);
  });

  it('0% never, 100% always; fractional percentages; gRPC aborts carry the status number', () => {
    const random = seededRandom(1);
    for (let i = 0; i < 500; i++) {
      assert.deepEqual(faultFor({ delay: { percentage: 0, fixedDelayMs: 5 }, abort: { percentage: 100, grpcStatus: 'UNAVAILABLE' } }, random), { abortGrpcStatus: 14 });
    }
    assert.deepEqual(faultFor({ abort: { percentage: 0.5, httpStatus: 500 } }, () => 0.0049), { abortStatus: 500 });
    assert.deepEqual(faultFor({ abort: { percentage: 0.5, httpStatus: 500 } }, () => 0.005), {});
    assert.deepEqual(faultFor({}, () => 0), {});
  });
});
