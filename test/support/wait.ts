/** Polling helpers shared by the integration tests (every loop bounded in time). */

/** Resolve once `cond()` holds (checked every 10 ms); reject with 'condition not met in time' after `ms`. */
export function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) return resolve();
      if (Date.now() > end) return reject(new Error('condition not met in time'));
      setTimeout(tick, 10);
    };
    tick();
  });
}

export const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
