/** Defaults that several places need, in one home. */

/** Seconds a graceful stop waits for the guest to power off before quitting qemu. */
export const DEFAULT_STOP_TIMEOUT_S = 60;
