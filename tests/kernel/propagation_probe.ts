/**
 * Run by netns_test.ts in a child mount namespace: prints what
 * netnsDirPropagates() says there, as JSON.
 */
import { netnsDirPropagates } from "../../src/kernel/netns.ts";

console.log(JSON.stringify(netnsDirPropagates()));
