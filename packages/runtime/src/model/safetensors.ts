import { open, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { MODEL_JSON_LIMITS, readModelJson } from './json.js';
import { basename, join } from 'node:path';
import { ModelError } from '@kvfold/core';

/** Bytes per element of every dtype the safetensors format defines. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

/** Floating-point dtypes the loader converts to float32. */
export const READABLE_DTYPES = ['F64', 'F32', 'F16', 'BF16'] as const;

/** A dtype the loader can read (converted to float32 on load). */
export type ReadableDType = (typeof READABLE_DTYPES)[number];

/** Dtypes {@link encodeSafetensors} can write. */
export type WritableDType = ReadableDType;

/** One tensor's entry in a safetensors header. */
export interface SafetensorsEntry {
  /** Tensor name. */
  readonly name: string;
  /** Safetensors dtype string (`F32`, `BF16`, ...). */
  readonly dtype: string;
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Absolute byte offset of the first element in the file. */
  readonly begin: number;
  /** Absolute byte offset one past the last element. */
  readonly end: number;
}

/** A parsed safetensors header. */
export interface SafetensorsHeader {
  /** Entries by tensor name. */
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
  /** The `__metadata__` string map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte offset where tensor data starts (8 + header length). */
  readonly dataStart: number;
}

/** A tensor read from a checkpoint, converted to float32. */
export interface LoadedTensor {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Elements, row-major. */
  readonly data: Float32Array;
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Largest safetensors header accepted (100 MB, the limit of the format's reference reader): the header
 * length is read from the file, so it is checked before anything of that size is allocated.
 */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

function checkHeaderLength(length: number, file: string): void {
  if (length > MAX_SAFETENSORS_HEADER) {
    throw new ModelError(`${file}: the safetensors header claims ${length} bytes; at most ${MAX_SAFETENSORS_HEADER} are read`, { file, reason: 'header', headerLength: length, allowed: MAX_SAFETENSORS_HEADER });
  }
}

/**
 * Parse a safetensors header from the file's first bytes.
 * @param head at least the first `8 + headerLength` bytes of the file.
 * @param fileSize total size of the file, to detect truncation.
 * @param file name used in error messages.
 * @throws ModelError when the header length or any tensor's data lies beyond the file (truncated), the
 *   JSON is malformed, an entry is malformed, or a dtype is not a safetensors dtype. The error names the
 *   file and, where it applies, the tensor.
 */
export function parseSafetensorsHeader(head: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  if (fileSize < 8 || head.length < 8) {
    throw new ModelError(`${file}: truncated safetensors file (${fileSize} bytes; the header length alone takes 8)`, { file, reason: 'truncated' });
  }
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const length = Number(view.getBigUint64(0, true));
  checkHeaderLength(length, file);
  if (length > fileSize - 8) {
    throw new ModelError(`${file}: truncated safetensors file: the header claims ${length} bytes but only ${fileSize - 8} follow`, { file, reason: 'truncated', headerLength: length });
  }
  if (head.length < 8 + length) throw new ModelError(`${file}: header bytes missing (${head.length} of ${8 + length} read)`, { file, reason: 'truncated' });
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(8, 8 + length)));
  } catch (cause) {
    throw new ModelError(`${file}: safetensors header is not valid JSON: ${(cause as Error).message}`, { file, reason: 'header' }, cause);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelError(`${file}: safetensors header must be a JSON object`, { file, reason: 'header' });
  }
  const dataStart = 8 + length;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) metadata = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const fail = (why: string, reason = 'header'): never => {
      throw new ModelError(`${file}: tensor "${name}": ${why}`, { file, tensor: name, reason });
    };
    if (typeof raw !== 'object' || raw === null) fail('entry must be an object with dtype, shape and data_offsets');
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) {
      fail(`unknown dtype ${JSON.stringify(e.dtype)}; safetensors dtypes are ${Object.keys(DTYPE_BYTES).join(', ')}`, 'dtype');
    }
    const dtype = e.dtype as string;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`shape must be a list of non-negative integers, got ${JSON.stringify(e.shape)}`);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[0] > off[1]) {
      fail(`data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`);
    }
    const [b, en] = off as [number, number];
    const need = numel(shape) * DTYPE_BYTES[dtype]!;
    if (en - b !== need) fail(`data_offsets span ${en - b} bytes but ${dtype} [${shape.join(', ')}] needs ${need}`);
    if (en > dataSize) fail(`data ends at byte ${dataStart + en} but the file has ${fileSize} bytes (truncated file)`, 'truncated');
    entries.set(name, { name, dtype, shape, begin: dataStart + b, end: dataStart + en });
  }
  return { entries, metadata, dataStart };
}

/** Typed-array views use the host byte order; safetensors is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let halfTable: Float32Array | undefined;

/** float16 bit pattern → float32, via a 64K table built on first use (exact for every pattern). */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac === 0 ? sign * Infinity : NaN;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

/** Decode little-endian raw tensor bytes of a readable dtype into float32. */
export function decodeTensorBytes(bytes: Uint8Array, dtype: string, where: { file: string; tensor: string }): Float32Array {
  // Copy to a fresh aligned buffer: data offsets in a safetensors file need not be aligned to the element size.
  // Uint8Array's own slice copies; a Node Buffer's slice (readFileSync's result) would be a view of the file.
  const buf = Uint8Array.prototype.slice.call(bytes).buffer;
  const view = new DataView(buf);
  switch (dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) return new Float32Array(buf);
      const out = new Float32Array(bytes.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(bytes.length / 8);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    }
    case 'F16': {
      const table = halfToFloatTable();
      const out = new Float32Array(bytes.length / 2);
      if (LITTLE_ENDIAN) {
        const u16 = new Uint16Array(buf);
        for (let i = 0; i < out.length; i++) out[i] = table[u16[i]!]!;
      } else {
        for (let i = 0; i < out.length; i++) out[i] = table[view.getUint16(i * 2, true)]!;
      }
      return out;
    }
    case 'BF16': {
      const bits = new Uint32Array(bytes.length / 2);
      if (LITTLE_ENDIAN) {
        const u16 = new Uint16Array(buf);
        for (let i = 0; i < bits.length; i++) bits[i] = u16[i]! << 16;
      } else {
        for (let i = 0; i < bits.length; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      }
      return new Float32Array(bits.buffer);
    }
    default:
      throw new ModelError(`${where.file}: tensor "${where.tensor}" has dtype ${dtype}; the loader reads ${READABLE_DTYPES.join(', ')}`, { ...where, dtype, reason: 'dtype', allowed: READABLE_DTYPES });
  }
}

/**
 * One safetensors file: the parsed header plus random access to each tensor, so a large checkpoint is
 * never read into memory whole.
 */
export class SafetensorsFile {
  private constructor(
    /** File name used in error messages. */
    readonly file: string,
    /** Parsed header. */
    readonly header: SafetensorsHeader,
    private readonly source: { handle: FileHandle } | { bytes: Uint8Array },
  ) {}

  /**
   * Open a file and parse its header.
   * @throws ModelError when the file is missing, truncated or its header is invalid.
   */
  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (cause) {
      throw new ModelError(`${path}: cannot open safetensors file: ${(cause as Error).message}`, { file: path, reason: 'missing' }, cause);
    }
    try {
      const { size } = await handle.stat();
      const first = new Uint8Array(8);
      await handle.read(first, 0, Math.min(8, size), 0);
      let head = first;
      if (size >= 8) {
        const length = Number(new DataView(first.buffer).getBigUint64(0, true));
        checkHeaderLength(length, path);
        if (length <= size - 8) {
          head = new Uint8Array(8 + length);
          await handle.read(head, 0, head.length, 0);
        }
      }
      return new SafetensorsFile(path, parseSafetensorsHeader(head, size, path), { handle });
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /** Parse a safetensors file already in memory. */
  static fromBytes(bytes: Uint8Array, file = 'model.safetensors'): SafetensorsFile {
    return new SafetensorsFile(file, parseSafetensorsHeader(bytes, bytes.length, file), { bytes });
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.header.entries.keys()];
  }

  /** The entry of a tensor, or undefined. */
  entry(name: string): SafetensorsEntry | undefined {
    return this.header.entries.get(name);
  }

  /**
   * Read a tensor as float32.
   * @throws ModelError when the tensor is absent, its dtype is not readable, or the file ends early.
   */
  async read(name: string): Promise<LoadedTensor> {
    const e = this.header.entries.get(name);
    if (!e) throw new ModelError(`${this.file}: no tensor "${name}"`, { file: this.file, tensor: name, reason: 'missing' });
    if (!(READABLE_DTYPES as readonly string[]).includes(e.dtype)) decodeTensorBytes(new Uint8Array(0), e.dtype, { file: this.file, tensor: name });
    let bytes: Uint8Array;
    if ('bytes' in this.source) {
      bytes = this.source.bytes.subarray(e.begin, e.end);
    } else {
      bytes = new Uint8Array(e.end - e.begin);
      const { bytesRead } = await this.source.handle.read(bytes, 0, bytes.length, e.begin);
      if (bytesRead !== bytes.length) {
        throw new ModelError(`${this.file}: tensor "${name}" is truncated (${bytesRead} of ${bytes.length} bytes)`, { file: this.file, tensor: name, reason: 'truncated' });
      }
    }
    return { shape: e.shape, data: decodeTensorBytes(bytes, e.dtype, { file: this.file, tensor: name }) };
  }

  /** Release the file handle. Safe to call twice. */
  async close(): Promise<void> {
    if ('handle' in this.source) await this.source.handle.close().catch(() => undefined);
  }
}

/** A tensor to write with {@link encodeSafetensors}. */
export interface TensorToWrite {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Elements, row-major (converted to `dtype`). */
  readonly data: ArrayLike<number>;
  /** Stored dtype; default `F32`. */
  readonly dtype?: WritableDType;
}

/** float32 → float16 bits, round to nearest even (overflow → infinity, tiny values → subnormals). */
export function floatToHalfBits(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** float32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function floatToBFloat16Bits(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/**
 * Serialise tensors to the safetensors format (little-endian, header padded with spaces to 8 bytes).
 * Meant for tests and tools that write small checkpoints.
 */
export function encodeSafetensors(tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? 'F32';
    const n = numel(t.shape);
    if (t.data.length !== n) throw new ModelError(`tensor "${name}": ${t.data.length} elements for shape [${t.shape.join(', ')}]`, { tensor: name, reason: 'shape' });
    const size = DTYPE_BYTES[dtype]!;
    const bytes = new Uint8Array(n * size);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) {
      const v = t.data[i]!;
      if (dtype === 'F32') view.setFloat32(i * 4, v, true);
      else if (dtype === 'F64') view.setFloat64(i * 8, v, true);
      else if (dtype === 'F16') view.setUint16(i * 2, floatToHalfBits(v), true);
      else view.setUint16(i * 2, floatToBFloat16Bits(v), true);
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8;
  json += ' '.repeat(pad);
  const headBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headBytes.length), true);
  out.set(headBytes, 8);
  let at = 8 + headBytes.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Write tensors to a safetensors file (see {@link encodeSafetensors}). */
export async function writeSafetensors(path: string, tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Readonly<Record<string, string>>): Promise<void> {
  await writeFile(path, encodeSafetensors(tensors, metadata));
}

/** Tensor entry of a {@link Checkpoint}, with the shard that holds it. */
export interface CheckpointEntry extends SafetensorsEntry {
  /** File holding the tensor. */
  readonly file: string;
}

/**
 * A checkpoint folder: `model.safetensors`, or shards listed by `model.safetensors.index.json`
 * (`weight_map`: tensor name → shard file). Shards are opened lazily and read tensor by tensor.
 */
export class Checkpoint {
  private constructor(
    /** The folder. */
    readonly folder: string,
    private readonly files: ReadonlyMap<string, SafetensorsFile>,
    private readonly index: ReadonlyMap<string, string>,
  ) {}

  /**
   * Open the checkpoint in `folder`.
   * @throws ModelError when neither file exists, the index is malformed, a shard it names is missing or
   *   invalid, or a tensor the index maps to a shard is absent from that shard.
   */
  static async open(folder: string): Promise<Checkpoint> {
    const indexPath = join(folder, 'model.safetensors.index.json');
    const single = join(folder, 'model.safetensors');
    if (await exists(indexPath)) {
      let doc: unknown;
      try {
        doc = readModelJson(indexPath, MODEL_JSON_LIMITS.index);
      } catch (cause) {
        throw new ModelError((cause as Error).message, { file: indexPath, reason: 'header' }, cause);
      }
      const map = (doc as { weight_map?: unknown } | null)?.weight_map;
      if (typeof map !== 'object' || map === null || Array.isArray(map)) {
        throw new ModelError(`${indexPath}: "weight_map" must be an object of tensor name → shard file`, { file: indexPath, field: 'weight_map', reason: 'header' });
      }
      const index = new Map<string, string>();
      for (const [name, f] of Object.entries(map)) {
        if (typeof f !== 'string' || f.length === 0 || basename(f) !== f) {
          throw new ModelError(`${indexPath}: weight_map["${name}"] must be a file name in the folder, got ${JSON.stringify(f)}`, { file: indexPath, tensor: name, reason: 'header' });
        }
        index.set(name, f);
      }
      const files = new Map<string, SafetensorsFile>();
      try {
        for (const f of new Set(index.values())) {
          const path = join(folder, f);
          if (!(await exists(path))) {
            const tensor = [...index].find(([, v]) => v === f)![0];
            throw new ModelError(`${path}: shard named by the index (for tensor "${tensor}") does not exist`, { file: path, tensor, reason: 'missing' });
          }
          files.set(f, await SafetensorsFile.open(path));
        }
        for (const [name, f] of index) {
          if (!files.get(f)!.entry(name)) throw new ModelError(`${join(folder, f)}: tensor "${name}" is listed in the index but absent from the shard`, { file: join(folder, f), tensor: name, reason: 'missing' });
        }
      } catch (e) {
        await Promise.all([...files.values()].map((s) => s.close()));
        throw e;
      }
      return new Checkpoint(folder, files, index);
    }
    if (!(await exists(single))) {
      throw new ModelError(`${folder}: no model.safetensors or model.safetensors.index.json`, { folder, reason: 'missing' });
    }
    const file = await SafetensorsFile.open(single);
    return new Checkpoint(folder, new Map([['model.safetensors', file]]), new Map(file.names().map((n) => [n, 'model.safetensors'])));
  }

  /** Every tensor name. */
  names(): string[] {
    return [...this.index.keys()];
  }

  /** A tensor's entry, or undefined when the checkpoint lacks it. */
  entry(name: string): CheckpointEntry | undefined {
    const f = this.index.get(name);
    const e = f === undefined ? undefined : this.files.get(f)?.entry(name);
    return e && f !== undefined ? { ...e, file: join(this.folder, f) } : undefined;
  }

  /**
   * Read a tensor as float32.
   * @throws ModelError naming the tensor when it is absent or unreadable.
   */
  async read(name: string): Promise<LoadedTensor> {
    const f = this.index.get(name);
    if (f === undefined) throw new ModelError(`${this.folder}: checkpoint has no tensor "${name}"`, { folder: this.folder, tensor: name, reason: 'missing' });
    return this.files.get(f)!.read(name);
  }

  /** Close every shard. */
  async close(): Promise<void> {
    await Promise.all([...this.files.values()].map((f) => f.close()));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
