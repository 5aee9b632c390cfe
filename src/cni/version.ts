/**
 * CNI spec versions: parsing and ordering of `x.y.z` strings.
 *
 * @module
 */

/** The CNI spec versions this runtime speaks, oldest first. */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = [
  "0.1.0",
  "0.2.0",
  "0.3.0",
  "0.3.1",
  "0.4.0",
  "1.0.0",
  "1.1.0",
];

const VERSION_RE = /^(\d{1,6})\.(\d{1,6})\.(\d{1,6})$/;

/** True when `v` looks like a CNI version (`major.minor.patch`). */
export function isCniVersion(v: string): boolean {
  return VERSION_RE.test(v);
}

/**
 * Orders two CNI versions: negative when `a < b`, 0 when equal, positive when
 * `a > b`. Throws on a malformed version, since ordering it would be a guess.
 */
export function compareCniVersions(a: string, b: string): number {
  const pa = parts(a), pb = parts(b);
  for (let i = 0; i < 3; i++) {
    if (pa[i] !== pb[i]) return pa[i] - pb[i];
  }
  return 0;
}

/** True when `a >= b`. */
export function versionAtLeast(a: string, b: string): boolean {
  return compareCniVersions(a, b) >= 0;
}

function parts(v: string): [number, number, number] {
  const m = VERSION_RE.exec(v);
  if (!m) throw new RangeError(`not a CNI version: ${JSON.stringify(v)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}
