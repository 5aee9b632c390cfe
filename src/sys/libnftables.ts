/**
 * libnftables over Deno FFI (`man 3 libnftables`): the nftables front end
 * as a library, so vmnic runs nft command batches without an `nft`
 * process. A batch is one transaction: it applies whole or not at all.
 *
 * The library is opened on first use (importing this module needs no FFI
 * permission) and works in the network namespace of the calling thread
 * (its netlink socket is opened there): call it on the JS main thread
 * while switched into the VM's netns, synchronously, as every other
 * kernel call (docs/architecture.md, "Kernel access").
 *
 * @module
 */
import { cstr } from "./libc.ts";

/** The library's soname (Debian's `libnftables1`). */
export const LIBNFTABLES = "libnftables.so.1";

/** `NFT_CTX_DEFAULT`: the only flag value `nft_ctx_new` takes. */
const NFT_CTX_DEFAULT = 0;
/** `NFT_CTX_OUTPUT_JSON`: list in JSON (libnftables-json(5)). */
const NFT_CTX_OUTPUT_JSON = 1 << 4;

const SYMBOLS = {
  nft_ctx_new: { parameters: ["u32"], result: "pointer" },
  nft_ctx_free: { parameters: ["pointer"], result: "void" },
  nft_ctx_buffer_output: { parameters: ["pointer"], result: "i32" },
  nft_ctx_buffer_error: { parameters: ["pointer"], result: "i32" },
  nft_ctx_get_output_buffer: { parameters: ["pointer"], result: "pointer" },
  nft_ctx_get_error_buffer: { parameters: ["pointer"], result: "pointer" },
  nft_ctx_output_set_flags: { parameters: ["pointer", "u32"], result: "void" },
  nft_run_cmd_from_buffer: { parameters: ["pointer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Nft = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Nft | undefined;
let loadError: string | undefined;

/**
 * A failed nftables batch (or a library that cannot be loaded), naming what
 * was attempted, on what (a table), and libnftables' own message.
 */
export class NftError extends Error {
  /** What was attempted, e.g. `"apply ruleset"`. */
  readonly op: string;
  /** The table (or library) it was attempted on. */
  readonly object: string;
  /** libnftables' error text (its error buffer), trimmed. */
  readonly detail: string;

  /** `op` on `object` failed; `detail` is libnftables' message. */
  constructor(op: string, object: string, detail: string) {
    super(`${op} ${object}: ${detail}`);
    this.name = "NftError";
    this.op = op;
    this.object = object;
    this.detail = detail;
  }
}

/** The library's symbols, opened on first use. */
function nft(): Nft {
  if (lib) return lib;
  if (loadError !== undefined) {
    throw new NftError("load", LIBNFTABLES, loadError);
  }
  try {
    lib = Deno.dlopen(LIBNFTABLES, SYMBOLS).symbols;
    return lib;
  } catch (e) {
    loadError = `${(e as Error).message} (install Debian's libnftables1)`;
    throw new NftError("load", LIBNFTABLES, loadError);
  }
}

/**
 * Why libnftables cannot be used here, or null when it loads. Asked before
 * anything changes, so a host without it refuses clone NICs up front.
 */
export function nftUnavailable(): string | null {
  try {
    nft();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Options of {@linkcode runNft}. */
export interface RunNftOptions {
  /** List in JSON (libnftables-json(5)) rather than nft's text. */
  json?: boolean;
  /** What the batch does and to what, for the error: `["apply", "ip vmnic_tap0"]`. */
  op?: string;
  /** The object of the error message. */
  object?: string;
}

/**
 * Runs one batch of nft commands (`add table …; add chain …`) in the
 * calling thread's netns, in one transaction, and returns what it printed
 * (a listing). Throws {@linkcode NftError} with libnftables' message when
 * the batch fails; nothing of it is applied then.
 */
export function runNft(commands: string, opts: RunNftOptions = {}): string {
  const op = opts.op ?? "run nft";
  const object = opts.object ?? "ruleset";
  const f = nft();
  const ctx = f.nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx === null) {
    throw new NftError(op, object, "nft_ctx_new failed (out of memory?)");
  }
  try {
    if (
      f.nft_ctx_buffer_output(ctx) !== 0 || f.nft_ctx_buffer_error(ctx) !== 0
    ) {
      throw new NftError(op, object, "cannot buffer libnftables' output");
    }
    if (opts.json) f.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
    const rc = f.nft_run_cmd_from_buffer(ctx, cstr(commands));
    if (rc !== 0) {
      const detail = readCString(f.nft_ctx_get_error_buffer(ctx)).trim();
      throw new NftError(op, object, detail || `failed (${rc})`);
    }
    return readCString(f.nft_ctx_get_output_buffer(ctx));
  } finally {
    f.nft_ctx_free(ctx);
  }
}

function readCString(p: Deno.PointerValue): string {
  return p === null ? "" : new Deno.UnsafePointerView(p).getCString();
}
