// Preloaded (node --import) by `npm run mutation` only. @stryker-mutator/mocha-runner 10.1.1 requires
// mocha's CLI helpers by extension-less paths (`mocha/lib/cli/run-helpers`); mocha 12 ships them as
// `.cjs`, so the runner fails to load ("no TestRunner plugins were loaded"). This resolve hook retries
// such a path with `.cjs`. Remove it when the runner resolves mocha 12's files itself.
import { registerHooks } from 'node:module';

const MOCHA_CLI = /[\\/]mocha[\\/]lib[\\/]cli[\\/][\w-]+$/;

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (err) {
      if (MOCHA_CLI.test(specifier)) return nextResolve(`${specifier}.cjs`, context);
      throw err;
    }
  },
});
