/**
 * Admission to one backend server: at most `maxConcurrent` requests in flight from this replica, the rest
 * waiting in a bounded queue. Waiting requests are served by priority class (highest first) and, within
 * a class, by deficit round robin between users: every request costs one unit and each user's quantum is
 * one, so users with waiting requests take turns and one user's flood cannot starve another user.
 */
import { GatewayError } from '../../shared/errors.js';

export interface FairQueueOptions {
  maxConcurrent: number;
  maxQueue: number;
  queueTimeoutMs: number;
  /** Class names, highest priority first; every request names one of them. */
  classes: readonly string[];
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
  user: string;
}

/** One class: a FIFO per user and the ring of users whose turn comes next. */
interface ClassQueue {
  perUser: Map<string, Waiter[]>;
  ring: string[];
}

export class FairQueue {
  private inFlight = 0;
  private waiting = 0;
  private readonly classes: ClassQueue[];
  private readonly classIndex = new Map<string, number>();

  constructor(
    private readonly o: FairQueueOptions,
    private readonly server: string,
  ) {
    this.classes = o.classes.map(() => ({ perUser: new Map(), ring: [] }));
    o.classes.forEach((c, i) => this.classIndex.set(c, i));
  }

  get stats(): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight, waiting: this.waiting };
  }

  /** Resolves to the slot's release once admitted; rejects with GW_QUEUE_FULL or GW_QUEUE_TIMEOUT. */
  acquire(user: string, cls: string): Promise<() => void> {
    if (this.inFlight < this.o.maxConcurrent && this.waiting === 0) {
      this.inFlight++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting >= this.o.maxQueue)
      return Promise.reject(
        new GatewayError('GW_QUEUE_FULL', `The admission queue of server "${this.server}" is full`, {
          server: this.server,
          maxQueue: this.o.maxQueue,
        }),
      );
    const q = this.classes[this.classIndex.get(cls) ?? this.classes.length - 1]!;
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        user,
        timer: setTimeout(() => {
          if (!this.remove(q, w)) return;
          reject(
            new GatewayError(
              'GW_QUEUE_TIMEOUT',
              `Timed out after ${this.o.queueTimeoutMs} ms waiting for server "${this.server}"`,
              { server: this.server, queueTimeoutMs: this.o.queueTimeoutMs },
            ),
          );
        }, this.o.queueTimeoutMs),
      };
      let mine = q.perUser.get(user);
      if (!mine) {
        q.perUser.set(user, (mine = []));
        q.ring.push(user);
      }
      mine.push(w);
      this.waiting++;
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
      this.dispatch();
    };
  }

  /** Hands free slots to waiters: highest class first, the user at the head of its ring next. */
  private dispatch(): void {
    while (this.inFlight < this.o.maxConcurrent && this.waiting > 0) {
      const q = this.classes.find((c) => c.ring.length > 0)!;
      const user = q.ring.shift()!;
      const mine = q.perUser.get(user)!;
      const w = mine.shift()!;
      if (mine.length > 0) q.ring.push(user);
      else q.perUser.delete(user);
      this.waiting--;
      clearTimeout(w.timer);
      this.inFlight++;
      w.resolve(this.releaser());
    }
  }

  private remove(q: ClassQueue, w: Waiter): boolean {
    const mine = q.perUser.get(w.user);
    const i = mine?.indexOf(w) ?? -1;
    if (!mine || i < 0) return false;
    mine.splice(i, 1);
    if (mine.length === 0) {
      q.perUser.delete(w.user);
      q.ring.splice(q.ring.indexOf(w.user), 1);
    }
    this.waiting--;
    return true;
  }
}
