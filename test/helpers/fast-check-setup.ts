/**
 * Every property test: on failure, fast-check prints the seed, the path and the shrunk counterexample (and
 * the failures met while shrinking), so a rare CI failure can be replayed with FC_SEED=<seed>.
 */
import fc from 'fast-check';

const seed = process.env.FC_SEED;
fc.configureGlobal({ verbose: fc.VerbosityLevel.Verbose, ...(seed !== undefined && seed !== '' ? { seed: Number(seed) } : {}) });
