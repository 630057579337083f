// Cross-node session takeover, claiming side: a connection of this node claimed a session whose previous
// owner is a connection of another node. That node detaches it (its client gets DISCONNECT 0x8E),
// enqueues its queue in the router and answers with the session's state (Router.handOver). The claim
// waits for that answer, so it resumes the state the previous owner had when it let go, not an older
// stored copy. Bounded: a previous owner's node that died (not yet declared dead) never answers.
import type { SessionOwner, StoredSession } from '@starling/router';

export type HandoverOutcome = { handed: true; session: StoredSession | null } | { handed: false };

export interface PendingHandover {
  /** Resolves with the previous owner's answer, or { handed: false } after timeoutMs. */
  wait(timeoutMs: number): Promise<HandoverOutcome>;
  /** The claim did not displace another node's owner: nothing to wait for. */
  cancel(): void;
}

function key(clientId: string, to: SessionOwner): string {
  return `${clientId}\u0000${to.workerId}\u0000${to.connId}`;
}

export class Handovers {
  private readonly pending = new Map<string, (outcome: HandoverOutcome) => void>();

  /** Registers interest before the claim is made, so an answer cannot arrive unseen. */
  expect(clientId: string, to: SessionOwner): PendingHandover {
    const k = key(clientId, to);
    let settle: ((o: HandoverOutcome) => void) | null = null;
    const answered = new Promise<HandoverOutcome>((resolve) => (settle = resolve));
    this.pending.set(k, (o) => settle!(o));
    return {
      wait: async (timeoutMs) => {
        // An answer that came before this (the claim's reply was still on its way) already settled it.
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<HandoverOutcome>((resolve) => (timer = setTimeout(() => resolve({ handed: false }), timeoutMs)));
        try {
          return await Promise.race([answered, timeout]);
        } finally {
          clearTimeout(timer);
          this.pending.delete(k);
        }
      },
      cancel: () => void this.pending.delete(k),
    };
  }

  /** The previous owner's node answered; false when no claim waits for it (timed out, or unknown). */
  answer(clientId: string, to: SessionOwner, session: StoredSession | null): boolean {
    const k = key(clientId, to);
    const settle = this.pending.get(k);
    if (!settle) return false;
    this.pending.delete(k);
    settle({ handed: true, session });
    return true;
  }
}
