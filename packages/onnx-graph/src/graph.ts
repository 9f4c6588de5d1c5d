import Long from 'long';
import onnxProto from 'onnx-proto';

/**
 * A small builder for ONNX models and model-local functions, on top of onnx-proto's protobufjs classes.
 *
 * Every kernel of the ONNX backend and the exported decoder graphs are written with it. Names are
 * generated (`<prefix>_<n>`) so a kernel file reads like the maths it computes; small constants become
 * `Constant` nodes, and only weights are initializers.
 * @module
 */

/** onnx-proto's generated namespace (protobufjs 6 static code). */
export const onnx = onnxProto.onnx;

/** A node as onnx-proto's plain-object interface describes it. */
export type NodeProto = onnxProto.onnx.INodeProto;
/** A model-local function as onnx-proto's plain-object interface describes it. */
export type FunctionProto = onnxProto.onnx.IFunctionProto;

/** Custom-op domain of the fused kernels. */
export const KVFOLD_DOMAIN = 'ai.kvfold';
/** Version the models import the custom domain at (ORT does not check it; the spec wants one). */
export const KVFOLD_DOMAIN_VERSION = 1;
/** Default-domain opset of every model and function: 18 moves ReduceX axes to inputs and adds ScatterElements reduction modes. */
export const OPSET = 18;
/** IR version written into models (8 is the newest onnx-proto 8.0.1 knows; ORT 1.30 loads it). */
export const IR_VERSION = 8;

/** ONNX element type codes used by the kernels. */
export const ElemType = {
  /** FLOAT. */
  float32: 1,
  /** INT32. */
  int32: 6,
  /** INT64. */
  int64: 7,
  /** BOOL. */
  bool: 9,
  /** DOUBLE. */
  float64: 11,
} as const;
/** Names of {@link ElemType}. */
export type ElemTypeName = keyof typeof ElemType;

/** A dimension of a graph input or output: a number, or a symbolic name shared between inputs. */
export type Dim = number | string;

/** An attribute value, tagged with its ONNX type. */
export type AttrValue =
  | {
      /** INT attribute. */
      readonly kind: 'int';
      /** The integer. */
      readonly value: number;
    }
  | {
      /** FLOAT attribute. */
      readonly kind: 'float';
      /** The number. */
      readonly value: number;
    }
  | {
      /** INTS attribute. */
      readonly kind: 'ints';
      /** The integers. */
      readonly value: readonly number[];
    }
  | {
      /** STRING attribute. */
      readonly kind: 'string';
      /** The text. */
      readonly value: string;
    }
  | {
      /** A reference to the calling node's attribute (inside a function body). */
      readonly kind: 'ref';
      /** The calling node's attribute name. */
      readonly name: string;
      /** Its type. */
      readonly type: 'int' | 'float' | 'ints' | 'string';
    };

/** Attribute constructors. */
export const attr = {
  /** An INT attribute. */
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  /** A FLOAT attribute. */
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  /** An INTS attribute. */
  ints: (value: readonly number[]): AttrValue => ({ kind: 'ints', value }),
  /** A STRING attribute. */
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  /** Inside a function body: take the value of the calling node's attribute `name`. */
  ref: (name: string, type: 'int' | 'float' | 'ints' | 'string'): AttrValue => ({ kind: 'ref', name, type }),
};

/** Reshape attributes for computed shapes: a 0 means "0", not "copy the input's dimension". */
export const ALLOW_ZERO: Record<string, AttrValue> = { allowzero: attr.int(1) };

const AttrType = onnx.AttributeProto.AttributeType;
const REF_TYPES = { int: AttrType.INT, float: AttrType.FLOAT, ints: AttrType.INTS, string: AttrType.STRING } as const;

function encodeAttr(name: string, a: AttrValue): onnxProto.onnx.IAttributeProto {
  switch (a.kind) {
    case 'int':
      // int64 fields need Long: protobufjs verify rejects other encodings of large values.
      return { name, type: AttrType.INT, i: Long.fromNumber(a.value) };
    case 'float':
      return { name, type: AttrType.FLOAT, f: a.value };
    case 'ints':
      return { name, type: AttrType.INTS, ints: a.value.map((v) => Long.fromNumber(v)) };
    case 'string':
      return { name, type: AttrType.STRING, s: new TextEncoder().encode(a.value) };
    case 'ref':
      return { name, type: REF_TYPES[a.type], refAttrName: a.name };
  }
}

/** Options of {@link NodeList.op}. */
export interface OpOptions {
  /** Operator domain; default the standard one (`''`). */
  readonly domain?: string;
  /** Number of outputs (default 1). */
  readonly outputs?: number;
  /** Explicit output names instead of generated ones (graph outputs, function outputs). */
  readonly names?: readonly string[];
}

/**
 * An ordered list of nodes with generated value names and a few helpers for the patterns every kernel
 * needs (int64 constants, Slice, Unsqueeze, ReduceSum with opset-18 axes inputs).
 */
export class NodeList {
  /** The nodes, in topological order (the order they were added). */
  readonly nodes: NodeProto[] = [];
  private counter = 0;

  /** Start an empty list whose generated value names begin with `prefix`. */
  constructor(private readonly prefix: string) {}

  /** A new unique value name. */
  fresh(hint = 'v'): string {
    return `${this.prefix}_${hint}_${this.counter++}`;
  }

  /** Add a node with one output; returns the output name. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, options: OpOptions = {}): string {
    return this.opN(opType, inputs, attrs, { ...options, outputs: 1 })[0]!;
  }

  /** Add a node with several outputs; returns their names. */
  opN(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, options: OpOptions = {}): string[] {
    const n = options.names?.length ?? options.outputs ?? 1;
    const outputs = options.names ? [...options.names] : Array.from({ length: n }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push({
      opType,
      domain: options.domain ?? '',
      input: [...inputs],
      output: outputs,
      name: this.fresh(`n${opType}`),
      attribute: Object.entries(attrs).map(([k, v]) => encodeAttr(k, v)),
    });
    return outputs;
  }

  /** An int64 constant (1-D of `values.length` unless `scalar`). */
  i64(values: readonly number[] | number, scalar = false): string {
    const vals = typeof values === 'number' ? [values] : values;
    return this.constant(ElemType.int64, scalar ? [] : [vals.length], { int64Data: vals.map((v) => Long.fromNumber(v)) });
  }

  /** A float32 constant (1-D of `values.length` unless `scalar`). */
  f32(values: readonly number[] | number, scalar = false): string {
    const vals = typeof values === 'number' ? [values] : values;
    return this.constant(ElemType.float32, scalar ? [] : [vals.length], { floatData: [...vals] });
  }

  /** An int32 constant (1-D of `values.length` unless `scalar`). */
  i32(values: readonly number[] | number, scalar = false): string {
    const vals = typeof values === 'number' ? [values] : values;
    return this.constant(ElemType.int32, scalar ? [] : [vals.length], { int32Data: [...vals] });
  }

  private constant(dataType: number, dims: number[], data: Partial<onnxProto.onnx.ITensorProto>): string {
    const out = this.fresh('c');
    this.nodes.push({
      opType: 'Constant',
      domain: '',
      input: [],
      output: [out],
      name: this.fresh('nConstant'),
      attribute: [{ name: 'value', type: AttrType.TENSOR, t: { dims: dims.map((d) => Long.fromNumber(d)), dataType, ...data } }],
    });
    return out;
  }

  /** `x[..., starts:ends]` along `axes` (constant bounds; `ends` may be a large sentinel for "to the end"). */
  slice(x: string, starts: readonly number[], ends: readonly number[], axes: readonly number[]): string {
    return this.op('Slice', [x, this.i64(starts), this.i64(ends), this.i64(axes)]);
  }

  /** Unsqueeze at constant `axes`. */
  unsqueeze(x: string, axes: readonly number[]): string {
    return this.op('Unsqueeze', [x, this.i64(axes)]);
  }

  /** Squeeze at constant `axes`. */
  squeeze(x: string, axes: readonly number[]): string {
    return this.op('Squeeze', [x, this.i64(axes)]);
  }

  /** A ReduceX op with constant axes (opset 18 passes them as an input). */
  reduce(op: 'ReduceSum' | 'ReduceMax' | 'ReduceMean' | 'ReduceL2' | 'ReduceSumSquare' | 'ReduceMin', x: string, axes: readonly number[], keepdims: boolean): string {
    return this.op(op, [x, this.i64(axes)], { keepdims: attr.int(keepdims ? 1 : 0) });
  }

  /** Cast to an element type. */
  cast(x: string, to: ElemTypeName): string {
    return this.op('Cast', [x], { to: attr.int(ElemType[to]) });
  }

  /** `Shape(x)[start:end]` as int64 1-D. */
  shape(x: string, start?: number, end?: number): string {
    const a: Record<string, AttrValue> = {};
    if (start !== undefined) a.start = attr.int(start);
    if (end !== undefined) a.end = attr.int(end);
    return this.op('Shape', [x], a);
  }

  /** `Concat` along `axis`. */
  concat(inputs: readonly string[], axis: number): string {
    return this.op('Concat', inputs, { axis: attr.int(axis) });
  }

  /** A constant of `shape` (an int64 1-D value name) filled with one scalar value of `type`. */
  fill(shapeValue: string, type: 'float32' | 'float64' | 'int32' | 'int64', value: number): string {
    const t =
      type === 'float32'
        ? { dims: [Long.fromNumber(1)], dataType: ElemType.float32, floatData: [value] }
        : type === 'float64'
        ? { dims: [Long.fromNumber(1)], dataType: ElemType.float64, doubleData: [value] }
        : type === 'int32'
          ? { dims: [Long.fromNumber(1)], dataType: ElemType.int32, int32Data: [value] }
          : { dims: [Long.fromNumber(1)], dataType: ElemType.int64, int64Data: [Long.fromNumber(value)] };
    const out = this.fresh('fill');
    this.nodes.push({
      opType: 'ConstantOfShape',
      domain: '',
      input: [shapeValue],
      output: [out],
      name: this.fresh('nConstantOfShape'),
      attribute: [{ name: 'value', type: AttrType.TENSOR, t }],
    });
    return out;
  }
}

/** A graph input or output declaration. */
export interface ValueDecl {
  /** Value name. */
  readonly name: string;
  /** Element type. */
  readonly type: ElemTypeName;
  /** Dimensions; strings are symbolic, so one model serves every shape. */
  readonly dims: readonly Dim[];
}

function valueInfo(v: ValueDecl): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: ElemType[v.type],
        shape: { dim: v.dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: Long.fromNumber(d) })) },
      },
    },
  };
}

/** A model-local function of the `ai.kvfold` domain: its signature and a body builder. */
export interface FunctionDef {
  /** Op name inside {@link KVFOLD_DOMAIN}. */
  readonly name: string;
  /** Formal input names, in order. */
  readonly inputs: readonly string[];
  /** Formal output names, in order. */
  readonly outputs: readonly string[];
  /** Attribute names the body reads through {@link attr.ref}. */
  readonly attributes?: readonly string[];
  /** Functions of the same domain the body calls (they are added to the model too). */
  readonly uses?: readonly FunctionDef[];
  /** Write the body: read inputs by their formal names, write each formal output name exactly once. */
  body(b: NodeList): void;
}

/** Build the FunctionProto of a definition (the body imports the default domain itself, as ORT requires). */
export function buildFunction(def: FunctionDef): FunctionProto {
  const b = new NodeList(def.name);
  def.body(b);
  const opsetImport = [{ domain: '', version: OPSET }];
  if (def.uses?.length) opsetImport.push({ domain: KVFOLD_DOMAIN, version: KVFOLD_DOMAIN_VERSION });
  return {
    domain: KVFOLD_DOMAIN,
    name: def.name,
    input: [...def.inputs],
    output: [...def.outputs],
    attribute: [...(def.attributes ?? [])],
    opsetImport,
    node: b.nodes,
  };
}

/** A weight stored in the model (an initializer): float32, int32 or int64 data with its dimensions. */
export interface InitializerDecl {
  /** Value name nodes read it by. */
  readonly name: string;
  /** Dimensions. */
  readonly dims: readonly number[];
  /** Elements, row-major: float32, float64, int32, or a `BigInt64Array` for int64. */
  readonly data: Float32Array | Float64Array | Int32Array | BigInt64Array;
}

/** Options of {@link GraphBuilder}. */
export interface GraphBuilderOptions {
  /** `producer_name` written into the model. Default `@kvfold/backend-onnx`. */
  readonly producer?: string;
}

/** Where {@link GraphBuilder.build} puts initializer bytes. */
export interface ExternalDataOptions {
  /** File name of the external data, relative to the model file (e.g. `model.onnx_data`). */
  readonly location: string;
  /** Initializers smaller than this many bytes stay inline. Default 1024. */
  readonly threshold?: number;
}

/** A model serialised with its initializers in a separate file. */
export interface ExternalModel {
  /** The `.onnx` bytes (graph, small initializers, references into the data file). */
  readonly model: Uint8Array;
  /** Chunks to write, in order, to the data file (their offsets are 4096-aligned in it). */
  readonly data: Uint8Array[];
  /** Total bytes of the data file. */
  readonly dataBytes: number;
}

const ELEM_OF_DATA = (d: InitializerDecl['data']): number =>
  d instanceof Float32Array ? ElemType.float32 : d instanceof Float64Array ? ElemType.float64 : d instanceof Int32Array ? ElemType.int32 : ElemType.int64;

function rawBytes(d: InitializerDecl['data']): Uint8Array {
  // ONNX raw_data is little-endian; every platform Node runs on here is little-endian too.
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** Builds one model: declared inputs and outputs, nodes, initializers and the functions its custom ops need. */
export class GraphBuilder extends NodeList {
  private readonly inputs: ValueDecl[] = [];
  private readonly outputs: ValueDecl[] = [];
  private readonly functions = new Map<string, FunctionDef>();
  private readonly initializers: InitializerDecl[] = [];
  private readonly metadata = new Map<string, string>();
  private readonly producer: string;

  /** Start an empty model named `name` (also the prefix of generated value names). */
  constructor(
    /** Graph name. */
    readonly name: string,
    options: GraphBuilderOptions = {},
  ) {
    super(name);
    this.producer = options.producer ?? '@kvfold/backend-onnx';
  }

  /** Add a weight as an initializer; returns its name. The data is referenced, not copied, until {@link build}. */
  initializer(name: string, dims: readonly number[], data: InitializerDecl['data']): string {
    let n = 1;
    for (const d of dims) n *= d;
    if (n !== data.length) throw new RangeError(`initializer ${name}: ${data.length} elements for dims [${dims.join(', ')}]`);
    this.initializers.push({ name, dims: [...dims], data });
    return name;
  }

  /** Set a `metadata_props` entry of the model. */
  meta(key: string, value: string): void {
    this.metadata.set(key, value);
  }

  /** Total bytes of the initializers. */
  initializerBytes(): number {
    return this.initializers.reduce((s, i) => s + i.data.byteLength, 0);
  }

  /** Declare a graph input; returns its name. */
  input(name: string, type: ElemTypeName, dims: readonly Dim[]): string {
    this.inputs.push({ name, type, dims });
    return name;
  }

  /** Declare a graph output (a value some node writes under this name). */
  output(name: string, type: ElemTypeName, dims: readonly Dim[]): void {
    this.outputs.push({ name, type, dims });
  }

  /**
   * Call an `ai.kvfold` custom op and ship its function body in the model, so ORT inlines the body when
   * no native kernel is registered for the op.
   */
  custom(fn: FunctionDef, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, names?: readonly string[]): string[] {
    this.addFunction(fn);
    return this.opN(fn.name, inputs, attrs, { domain: KVFOLD_DOMAIN, outputs: fn.outputs.length, names });
  }

  private addFunction(fn: FunctionDef): void {
    if (this.functions.has(fn.name)) return;
    for (const u of fn.uses ?? []) this.addFunction(u);
    this.functions.set(fn.name, fn);
  }

  /** The model proto as a plain object (for inspection in tests); initializers inline. */
  toModel(): onnxProto.onnx.IModelProto {
    return this.modelWith(this.initializers.map((i) => ({ name: i.name, dims: i.dims.map((d) => Long.fromNumber(d)), dataType: ELEM_OF_DATA(i.data), rawData: rawBytes(i.data) })));
  }

  private modelWith(initializer: onnxProto.onnx.ITensorProto[]): onnxProto.onnx.IModelProto {
    const opsetImport = [{ domain: '', version: OPSET }];
    if (this.functions.size > 0) opsetImport.push({ domain: KVFOLD_DOMAIN, version: KVFOLD_DOMAIN_VERSION });
    return {
      irVersion: IR_VERSION,
      producerName: this.producer,
      opsetImport,
      functions: [...this.functions.values()].map(buildFunction),
      ...(this.metadata.size > 0 ? { metadataProps: [...this.metadata].map(([key, value]) => ({ key, value })) } : {}),
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
        ...(initializer.length > 0 ? { initializer } : {}),
      },
    };
  }

  /**
   * Serialise the model with every initializer inline. Protobuf caps a message at 2 GiB, so larger
   * models need {@link buildExternal}.
   */
  build(): Uint8Array {
    return onnx.ModelProto.encode(onnx.ModelProto.create(this.toModel())).finish();
  }

  /**
   * Serialise the model with initializers of at least `threshold` bytes in a separate data file (ONNX
   * external data: `location`, `offset`, `length` per tensor), as exporters do for models over 2 GiB.
   * The returned chunks alias the initializers' arrays; nothing is copied.
   */
  buildExternal(options: ExternalDataOptions): ExternalModel {
    const threshold = options.threshold ?? 1024;
    const data: Uint8Array[] = [];
    let offset = 0;
    const initializer = this.initializers.map((i): onnxProto.onnx.ITensorProto => {
      const bytes = rawBytes(i.data);
      const base = { name: i.name, dims: i.dims.map((d) => Long.fromNumber(d)), dataType: ELEM_OF_DATA(i.data) };
      if (bytes.byteLength < threshold) return { ...base, rawData: bytes };
      // ORT memory-maps the file; aligned offsets keep every tensor's start page- and SIMD-aligned.
      const pad = (4096 - (offset % 4096)) % 4096;
      if (pad > 0) data.push(new Uint8Array(pad));
      offset += pad;
      data.push(bytes);
      const entry = {
        ...base,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: options.location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.byteLength) },
        ],
      };
      offset += bytes.byteLength;
      return entry;
    });
    return { model: onnx.ModelProto.encode(onnx.ModelProto.create(this.modelWith(initializer))).finish(), data, dataBytes: offset };
  }
}
