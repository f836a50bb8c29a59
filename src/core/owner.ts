/** A process that keeps something alive; its start time (clock ticks since boot) tells a reused pid apart. */
export interface Owner {
  pid: number;
  startTime: number;
}
