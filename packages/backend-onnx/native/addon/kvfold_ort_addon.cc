// kvfold's N-API addon: ONNX Runtime sessions that register the ai.kvfold custom-op library.
//
// onnxruntime-node 1.30 has no way to register a custom-op library (its session options parser never calls
// RegisterCustomOpsLibrary). This addon links the very libonnxruntime.so.1 onnxruntime-node ships, so both
// share one OrtEnv, and exposes the few calls the backend needs: create a session (custom ops registered,
// CPU or CUDA EP) and run it synchronously on typed arrays.
//
// JS API (see src/session.ts NativeAddon):
//   ortVersion(): string, apiVersion: number, apiAvailable: boolean (false: the runtime is older than the headers)
//   createSession(model: Uint8Array, { library, ep: 'cpu'|'cuda', threads, deviceId }): Session
//   run(session, inputNames: string[], inputs: {type, dims, data}[], outputNames: string[], into?: ({type, dims, data} | null)[]):
//       {type, dims, data}[]   (outputs given in `into` are written into those arrays and returned as given)
//   release(session): void
//   opsCalls(library): number   (kernel invocations counted by the loaded custom-op library; -1 if not loaded)
//   streamingMinBytes(library, bytes): number   (the custom-op library's streaming threshold before the call, set
//       when bytes >= 0; loads the library as createSession does; -1 if it cannot be loaded or lacks the entry point)
#include <dlfcn.h>
#include <node_api.h>

// Manual init: the C++ wrapper would otherwise fetch the API table in a static initialiser and keep a null
// pointer when libonnxruntime is older than these headers; here that case becomes a JS error instead.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Session {
  // Options outlive the session: they hold the custom-op library handle.
  std::unique_ptr<Ort::SessionOptions> options;
  std::unique_ptr<Ort::Session> session;
};

/** The API table of ORT_API_VERSION, or null when the loaded libonnxruntime is older than the headers. */
const OrtApi* api() {
  static const OrtApi* a = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  return a;
}

Ort::Env& env() {
  // ORT keeps one OrtEnv per process: this returns onnxruntime-node's when it exists (reference counted).
  static Ort::Env e(ORT_LOGGING_LEVEL_ERROR, "kvfold");
  return e;
}

struct JsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define NAPI_OK(call)                                                       \
  do {                                                                      \
    if ((call) != napi_ok) throw JsError(std::string("N-API call failed: ") + #call); \
  } while (0)

std::string get_string(napi_env e, napi_value v) {
  size_t n = 0;
  NAPI_OK(napi_get_value_string_utf8(e, v, nullptr, 0, &n));
  std::string s(n, '\0');
  NAPI_OK(napi_get_value_string_utf8(e, v, s.data(), n + 1, &n));
  return s;
}

napi_value get_prop(napi_env e, napi_value obj, const char* name) {
  napi_value v;
  NAPI_OK(napi_get_named_property(e, obj, name, &v));
  return v;
}

int64_t get_int(napi_env e, napi_value v) {
  int64_t x = 0;
  NAPI_OK(napi_get_value_int64(e, v, &x));
  return x;
}

uint32_t array_length(napi_env e, napi_value a) {
  uint32_t n = 0;
  NAPI_OK(napi_get_array_length(e, a, &n));
  return n;
}

napi_value element(napi_env e, napi_value a, uint32_t i) {
  napi_value v;
  NAPI_OK(napi_get_element(e, a, i, &v));
  return v;
}

struct TypeMap {
  const char* name;
  ONNXTensorElementDataType ort;
  napi_typedarray_type js;
  size_t bytes;
};
constexpr TypeMap kTypes[] = {
    {"float32", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, napi_float32_array, 4},
    {"int32", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, napi_int32_array, 4},
    {"int64", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, napi_bigint64_array, 8},
    {"bool", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, napi_uint8_array, 1},
};

const TypeMap& type_by_name(const std::string& n) {
  for (const auto& t : kTypes)
    if (n == t.name) return t;
  throw JsError("unsupported tensor type " + n);
}

const TypeMap& type_by_ort(ONNXTensorElementDataType o) {
  for (const auto& t : kTypes)
    if (o == t.ort) return t;
  throw JsError("unsupported output element type " + std::to_string(static_cast<int>(o)));
}

/** Run `body`, turning C++ exceptions into JS errors. */
/**
 * Fills `argv` with the call's first N arguments (undefined where fewer were passed) and returns how many
 * were passed; throws "<usage> needs [at least] <min> argument(s)" when fewer than `min` were.
 */
template <size_t N>
size_t call_args(napi_env e, napi_callback_info info, napi_value (&argv)[N], size_t min = 0, const char* usage = "") {
  size_t argc = N;
  NAPI_OK(napi_get_cb_info(e, info, &argc, argv, nullptr, nullptr));
  if (argc < min) throw JsError(std::string(usage) + " needs " + (min < N ? "at least " : "") + std::to_string(min) + (min == 1 ? " argument" : " arguments"));
  return argc;
}

/** A JS typed array's element type, element count and first element. */
struct TypedArrayView {
  napi_typedarray_type type;
  size_t length;
  void* data;
};

TypedArrayView typed_array(napi_env e, napi_value v) {
  TypedArrayView t{};
  size_t offset = 0;
  napi_value ab;
  NAPI_OK(napi_get_typedarray_info(e, v, &t.type, &t.length, &t.data, &ab, &offset));
  return t;
}

template <typename F>
napi_value guarded(napi_env e, F body) {
  try {
    return body();
  } catch (const std::exception& ex) {
    napi_throw_error(e, nullptr, ex.what());
    return nullptr;
  }
}

napi_value OrtVersion(napi_env e, napi_callback_info) {
  return guarded(e, [&] {
    napi_value v;
    const std::string s = Ort::GetVersionString();
    NAPI_OK(napi_create_string_utf8(e, s.c_str(), s.size(), &v));
    return v;
  });
}

void finalize_session(napi_env, void* data, void*) { delete static_cast<Session*>(data); }

Session* unwrap(napi_env e, napi_value v) {
  void* p = nullptr;
  NAPI_OK(napi_unwrap(e, v, &p));
  auto* s = static_cast<Session*>(p);
  if (!s->session) throw JsError("the session was released");
  return s;
}

napi_value CreateSession(napi_env e, napi_callback_info info) {
  return guarded(e, [&] {
    napi_value argv[2];
    call_args(e, info, argv, 2, "createSession(model, options)");
    const TypedArrayView model = typed_array(e, argv[0]);
    const std::string library = get_string(e, get_prop(e, argv[1], "library"));
    const std::string ep = get_string(e, get_prop(e, argv[1], "ep"));
    const int64_t threads = get_int(e, get_prop(e, argv[1], "threads"));
    const int64_t device = get_int(e, get_prop(e, argv[1], "deviceId"));

    if (!api()) {
      throw JsError(std::string("libonnxruntime ") + OrtGetApiBase()->GetVersionString() + " does not provide ORT API " + std::to_string(ORT_API_VERSION) +
                    ", which this addon was compiled for; rebuild it with `pnpm --filter @kvfold/backend-onnx build:native`");
    }
    auto s = std::make_unique<Session>();
    s->options = std::make_unique<Ort::SessionOptions>();
    s->options->SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    s->options->SetLogSeverityLevel(3);
    if (threads > 0) s->options->SetIntraOpNumThreads(static_cast<int>(threads));
    // Every kernel has its own session, so its own intra-op pool: a pool whose workers spin after its op
    // (ORT's default) takes the cores from the next kernel's pool and from the JS planning between ops.
    // On 2 shared cores that made 2 threads slower than 1 (bench/RESULTS.md, issue 12, "intra-op pools
    // that block"). A blocked worker wakes in microseconds; the ops take milliseconds.
    s->options->AddConfigEntry("session.intra_op.allow_spinning", "0");
    if (ep == "cuda") {
      Ort::CUDAProviderOptions cuda;
      cuda.Update({{"device_id", std::to_string(device)}});
      s->options->AppendExecutionProvider_CUDA_V2(*cuda);
    }
    // Pin the library for the life of the process: ORT unloads it with the last session options otherwise,
    // and reloading it for every new kernel session would reset its state (and cost a dlopen each time).
    if (!dlopen(library.c_str(), RTLD_NOW | RTLD_NODELETE)) throw JsError(std::string("cannot load ") + library + ": " + dlerror());
    Ort::ThrowOnError(Ort::GetApi().RegisterCustomOpsLibrary_V2(*s->options, library.c_str()));
    s->session = std::make_unique<Ort::Session>(env(), model.data, model.length, *s->options);

    napi_value obj;
    NAPI_OK(napi_create_object(e, &obj));
    NAPI_OK(napi_wrap(e, obj, s.get(), finalize_session, nullptr, nullptr));
    s.release();
    return obj;
  });
}

/** A JS {type, dims, data} tensor as an Ort::Value over the JS buffer (zero copy, valid during the synchronous call). */
Ort::Value view_of(napi_env e, napi_value t, const std::string& what, const Ort::MemoryInfo& mem) {
  static int64_t empty_buffer[1] = {0};
  const TypeMap& type = type_by_name(get_string(e, get_prop(e, t, "type")));
  napi_value dims_v = get_prop(e, t, "dims");
  std::vector<int64_t> dims(array_length(e, dims_v));
  for (uint32_t d = 0; d < dims.size(); ++d) dims[d] = get_int(e, element(e, dims_v, d));
  const TypedArrayView a = typed_array(e, get_prop(e, t, "data"));
  if (a.type != type.js) throw JsError(what + ": data array does not match type " + type.name);
  void* p = a.length == 0 ? static_cast<void*>(empty_buffer) : a.data;
  return Ort::Value::CreateTensor(mem, p, a.length * type.bytes, dims.data(), dims.size(), type.ort);
}

napi_value Run(napi_env e, napi_callback_info info) {
  return guarded(e, [&] {
    napi_value argv[5];
    const size_t argc = call_args(e, info, argv, 4, "run(session, inputNames, inputs, outputNames, into?)");
    Session* s = unwrap(e, argv[0]);
    const uint32_t nin = array_length(e, argv[1]);
    const uint32_t nout = array_length(e, argv[3]);
    std::vector<std::string> in_names(nin), out_names(nout);
    std::vector<const char*> in_ptrs(nin), out_ptrs(nout);
    std::vector<Ort::Value> inputs;
    inputs.reserve(nin);
    const auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    for (uint32_t i = 0; i < nin; ++i) {
      in_names[i] = get_string(e, element(e, argv[1], i));
      in_ptrs[i] = in_names[i].c_str();
      inputs.push_back(view_of(e, element(e, argv[2], i), "input " + in_names[i], mem));
    }
    // Outputs the caller preallocated: ORT writes into the JS buffers (no allocation, no copy back).
    bool has_into = false;
    if (argc >= 5) {
      napi_valuetype vt;
      NAPI_OK(napi_typeof(e, argv[4], &vt));
      has_into = vt == napi_object;
    }
    std::vector<Ort::Value> outputs;
    outputs.reserve(nout);
    std::vector<napi_value> given(nout, nullptr);
    for (uint32_t i = 0; i < nout; ++i) {
      out_names[i] = get_string(e, element(e, argv[3], i));
      out_ptrs[i] = out_names[i].c_str();
      napi_value t = nullptr;
      napi_valuetype vt = napi_null;
      if (has_into) {
        t = element(e, argv[4], i);
        NAPI_OK(napi_typeof(e, t, &vt));
      }
      if (vt == napi_object) {
        given[i] = t;
        outputs.push_back(view_of(e, t, "output " + out_names[i], mem));
      } else {
        outputs.emplace_back(nullptr);
      }
    }
    s->session->Run(Ort::RunOptions{nullptr}, in_ptrs.data(), inputs.data(), nin, out_ptrs.data(), outputs.data(), nout);

    napi_value result;
    NAPI_OK(napi_create_array_with_length(e, nout, &result));
    for (uint32_t i = 0; i < nout; ++i) {
      if (given[i]) {
        NAPI_OK(napi_set_element(e, result, i, given[i]));
        continue;
      }
      auto info = outputs[i].GetTensorTypeAndShapeInfo();
      const TypeMap& type = type_by_ort(info.GetElementType());
      const auto dims = info.GetShape();
      const size_t count = info.GetElementCount();
      void* buf = nullptr;
      napi_value ab, ta, dims_v, obj, type_v;
      NAPI_OK(napi_create_arraybuffer(e, count * type.bytes, &buf, &ab));
      if (count) std::memcpy(buf, outputs[i].GetTensorRawData(), count * type.bytes);
      NAPI_OK(napi_create_typedarray(e, type.js, count, ab, 0, &ta));
      NAPI_OK(napi_create_array_with_length(e, dims.size(), &dims_v));
      for (uint32_t d = 0; d < dims.size(); ++d) {
        napi_value dv;
        NAPI_OK(napi_create_int64(e, dims[d], &dv));
        NAPI_OK(napi_set_element(e, dims_v, d, dv));
      }
      NAPI_OK(napi_create_object(e, &obj));
      NAPI_OK(napi_create_string_utf8(e, type.name, NAPI_AUTO_LENGTH, &type_v));
      NAPI_OK(napi_set_named_property(e, obj, "type", type_v));
      NAPI_OK(napi_set_named_property(e, obj, "dims", dims_v));
      NAPI_OK(napi_set_named_property(e, obj, "data", ta));
      NAPI_OK(napi_set_element(e, result, i, obj));
    }
    return result;
  });
}

napi_value Release(napi_env e, napi_callback_info info) {
  return guarded(e, [&]() -> napi_value {
    napi_value argv[1];
    const size_t argc = call_args(e, info, argv);
    void* p = nullptr;
    if (argc >= 1 && napi_unwrap(e, argv[0], &p) == napi_ok && p) {
      auto* s = static_cast<Session*>(p);
      s->session.reset();
      s->options.reset();
    }
    return nullptr;
  });
}

napi_value OpsCalls(napi_env e, napi_callback_info info) {
  return guarded(e, [&] {
    napi_value argv[1];
    call_args(e, info, argv, 1, "opsCalls(library)");
    const std::string path = get_string(e, argv[0]);
    double n = -1;
    // RTLD_NOLOAD: only look at the copy ORT already loaded, never load one here.
    if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
      if (auto f = reinterpret_cast<uint64_t (*)()>(dlsym(h, "KvfoldOpsCalls"))) n = static_cast<double>(f());
      dlclose(h);
    }
    napi_value v;
    NAPI_OK(napi_create_double(e, n, &v));
    return v;
  });
}

napi_value StreamingMinBytes(napi_env e, napi_callback_info info) {
  return guarded(e, [&] {
    napi_value argv[2];
    call_args(e, info, argv, 2, "streamingMinBytes(library, bytes)");
    const std::string path = get_string(e, argv[0]);
    const int64_t bytes = get_int(e, argv[1]);
    double previous = -1;
    // Loaded (and pinned) as CreateSession loads it, so a threshold set before the first session holds for
    // the copy ORT then registers: dlopen of the same path returns the same instance.
    if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NODELETE)) {
      if (auto f = reinterpret_cast<int64_t (*)(int64_t)>(dlsym(h, "KvfoldStreamingMinBytes"))) previous = static_cast<double>(f(bytes));
      dlclose(h);
    }
    napi_value v;
    NAPI_OK(napi_create_double(e, previous, &v));
    return v;
  });
}

napi_value Init(napi_env e, napi_value exports) {
  return guarded(e, [&] {
    if (api()) Ort::InitApi(api());
    const std::pair<const char*, napi_callback> functions[] = {
        {"ortVersion", OrtVersion}, {"createSession", CreateSession}, {"run", Run},
        {"release", Release},       {"opsCalls", OpsCalls},           {"streamingMinBytes", StreamingMinBytes},
    };
    for (const auto& [name, callback] : functions) {
      napi_value fn;
      NAPI_OK(napi_create_function(e, name, NAPI_AUTO_LENGTH, callback, nullptr, &fn));
      NAPI_OK(napi_set_named_property(e, exports, name, fn));
    }
    napi_value api_version, api_available;
    NAPI_OK(napi_create_int32(e, ORT_API_VERSION, &api_version));
    NAPI_OK(napi_set_named_property(e, exports, "apiVersion", api_version));
    NAPI_OK(napi_get_boolean(e, api() != nullptr, &api_available));
    NAPI_OK(napi_set_named_property(e, exports, "apiAvailable", api_available));
    return exports;
  });
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
