/**
 * The health of one replica, from active checks (pings) and passive ones (the outcome and latency of real
 * calls): consecutive-failure ejection, recovery after consecutive successful checks, slow start, an EWMA
 * of latency for the latency balancer and a health score for operators.
 */
export interface HealthPolicy {
  healthyThreshold: number;
  unhealthyThreshold: number;
  slowStartMs: number;
  /** How long an ejection holds when no active check can end it sooner. */
  ejectMs: number;
  /** True when active checks run (then only they bring a replica back). */
  activeChecks: boolean;
}

/** Weight of the newest sample in the moving averages. */
const ALPHA = 0.2;
/** A recovered replica starts at this share of its weight. */
const SLOW_START_FLOOR = 0.1;

export class ReplicaHealth {
  healthy = true;
  ewmaMs = 0;
  /** Moving average of call success (1) and failure (0). */
  successRate = 1;
  consecutiveFailures = 0;
  consecutiveSuccesses = 0;
  lastError: string | undefined;
  lastCheckAt = 0;
  lastCheckOk: boolean | undefined;
  ejectedUntil = 0;
  private slowStartFrom = 0;
  recoveries = 0;
  ejections = 0;

  constructor(private readonly policy: HealthPolicy) {}

  /** Whether the replica may take traffic; an ejection without active checks lapses by itself. */
  usable(now: number): boolean {
    if (this.healthy) return true;
    if (!this.policy.activeChecks && now >= this.ejectedUntil) {
      this.recover(now);
      return true;
    }
    return false;
  }

  /** The slow-start ramp: SLOW_START_FLOOR..1 over slowStartMs after a recovery. */
  ramp(now: number): number {
    const ms = this.policy.slowStartMs;
    if (ms <= 0 || this.slowStartFrom === 0) return 1;
    const t = (now - this.slowStartFrom) / ms;
    if (t >= 1) {
      this.slowStartFrom = 0;
      return 1;
    }
    return SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * Math.max(0, t);
  }

  inSlowStart(now: number): boolean {
    return this.ramp(now) < 1;
  }

  /** A real call answered (a tool error or a caller mistake counts: the replica did its job). */
  callSucceeded(latencyMs: number): void {
    this.ewmaMs = this.ewmaMs === 0 ? latencyMs : this.ewmaMs + ALPHA * (latencyMs - this.ewmaMs);
    this.successRate += ALPHA * (1 - this.successRate);
    this.consecutiveFailures = 0;
  }

  /** A real call failed on the replica's account (unavailable, timeout). True when this ejects it. */
  callFailed(error: string, now: number, latencyMs?: number): boolean {
    if (latencyMs !== undefined && latencyMs > this.ewmaMs)
      this.ewmaMs = this.ewmaMs === 0 ? latencyMs : this.ewmaMs + ALPHA * (latencyMs - this.ewmaMs);
    this.successRate += ALPHA * (0 - this.successRate);
    this.lastError = error;
    this.consecutiveSuccesses = 0;
    return ++this.consecutiveFailures >= this.policy.unhealthyThreshold && this.eject(now);
  }

  /** An active check's outcome. Returns 'recovered' or 'ejected' when the state flipped. */
  checked(ok: boolean, now: number, error?: string): 'recovered' | 'ejected' | undefined {
    this.lastCheckAt = now;
    this.lastCheckOk = ok;
    if (ok) {
      this.consecutiveFailures = 0;
      if (!this.healthy && ++this.consecutiveSuccesses >= this.policy.healthyThreshold) {
        this.recover(now);
        return 'recovered';
      }
      return undefined;
    }
    this.lastError = error;
    this.consecutiveSuccesses = 0;
    if (++this.consecutiveFailures >= this.policy.unhealthyThreshold && this.eject(now)) return 'ejected';
    return undefined;
  }

  /** Takes the replica out (another instance's verdict, or our own finding). True when it was in. */
  eject(now: number, untilMs = now + this.policy.ejectMs): boolean {
    this.ejectedUntil = Math.max(this.ejectedUntil, untilMs);
    if (!this.healthy) return false;
    this.healthy = false;
    this.ejections++;
    return true;
  }

  recover(now: number): void {
    if (this.healthy) return;
    this.healthy = true;
    this.recoveries++;
    this.consecutiveFailures = 0;
    this.consecutiveSuccesses = 0;
    this.slowStartFrom = this.policy.slowStartMs > 0 ? now : 0;
  }

  /** 0..1: 0 out of service; otherwise recent success times the slow-start ramp. */
  score(now: number): number {
    if (!this.healthy) return 0;
    return Math.round(this.successRate * this.ramp(now) * 1000) / 1000;
  }
}
