// qupaint._C: one pybind11 module over raw buffers (no torch headers).
// The Python layer validates and converts inputs, then passes data pointers and
// element strides; every entry point releases the GIL while it runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "cpu/kernels.h"
#ifdef QUPAINT_WITH_CUDA
#include "cuda/kernels.h"
#endif
#include "qupaint/fastmath.h"
#include "qupaint/kernel_bodies.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef QUPAINT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace py = pybind11;
using qp::ColorArgs;
using qp::ColorSpace;
using qp::PixelArgs;
using qp::TmmArgs;

namespace {

int cuda_device_count() {
#ifdef QUPAINT_WITH_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

// Elementwise qupaint/fastmath.h functions, for the accuracy tests (tests/test_fastmath.py):
// fn 0 cis -> out [n, 2] (cos, sin); 1 exp; 2 log; 3 cbrt -> out [n].
template <class T>
void fastmath_eval(int fn, const T* x, long long n, T* out) {
  for (long long i = 0; i < n; ++i) {
    if (fn == 0) {
      const qp::cplx<T> e = qp::fm::cis<T>(x[i]);
      out[2 * i] = e.re;
      out[2 * i + 1] = e.im;
    } else if (fn == 1) {
      out[i] = qp::fm::exp<T>(x[i]);
    } else if (fn == 2) {
      out[i] = qp::fm::log(x[i]);
    } else {
      out[i] = qp::fm::cbrt<T>(x[i]);
    }
  }
}

// dtype dispatch: "float32" -> float, "float64" -> double; anything else is a ValueError
// (a buffer read as the wrong type gives garbage, never an error, so none may slip through).
template <class F32, class F64>
void by_dtype(const std::string& dtype, F32 f32, F64 f64) {
  if (dtype == "float32") f32();
  else if (dtype == "float64") f64();
  else throw py::value_error("dtype must be 'float32' or 'float64'; got '" + dtype + "'");
}

// Runs f<float> or f<double> (a generic lambda taking a type tag) without the GIL.
template <class F>
void run_typed(const std::string& dtype, F f) {
  py::gil_scoped_release release;
  by_dtype(dtype, [&] { f(float{}); }, [&] { f(double{}); });
}

// Runs a CUDA kernel's per-thread body over its whole launch grid on the CPU, serially, with
// the launch's own arithmetic: blocks of `block` threads, launch_grid(total, block) blocks.
template <class F>
void emulate_grid(long long total, int block, F body) {
  const unsigned grid = qp::launch_grid(total, block);
  for (unsigned k = 0; k < grid; ++k)
    for (int t = 0; t < block; ++t) body(qp::thread_index(k, block, static_cast<unsigned>(t)));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "qupaint compiled kernels (CPU C++ and, when built, CUDA)";
  m.attr("__version__") = QUPAINT_VERSION;
  m.def("has_cuda", [] {
#ifdef QUPAINT_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled into this build.");
  m.def("cuda_device_count", &cuda_device_count, "Number of CUDA devices the runtime sees (0 without a driver).");
  m.def("has_openmp", [] {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  });
  m.def("set_num_threads", [](int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : 1);
#else
    (void)n;
#endif
  }, "Threads used by the OpenMP CPU kernels (e.g. 1 inside each worker process).");
  m.def("max_threads", [] {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });

  // Argument structs: Python fills the fields by name (qupaint/args.h documents them).
  py::class_<TmmArgs>(m, "TmmArgs", "A batch of thin-film stacks: pointers, element strides, sizes.")
      .def(py::init<>())
      .def_readwrite("n", &TmmArgs::n)
      .def_readwrite("n_sb", &TmmArgs::n_sb)
      .def_readwrite("n_sl", &TmmArgs::n_sl)
      .def_readwrite("n_sw", &TmmArgs::n_sw)
      .def_readwrite("d", &TmmArgs::d)
      .def_readwrite("d_sb", &TmmArgs::d_sb)
      .def_readwrite("d_sl", &TmmArgs::d_sl)
      .def_readwrite("sin0", &TmmArgs::sin0)
      .def_readwrite("sin0_sb", &TmmArgs::sin0_sb)
      .def_readwrite("wl", &TmmArgs::wl)
      .def_readwrite("B", &TmmArgs::B)
      .def_readwrite("L", &TmmArgs::L)
      .def_readwrite("W", &TmmArgs::W)
      .def_readwrite("pol", &TmmArgs::pol)
      .def_readwrite("out", &TmmArgs::out);
  py::class_<qp::TopArgs>(m, "TopArgs", "A top-folded batch: coefficients [P, 7, W], kq [2, W], d, out.")
      .def(py::init<>())
      .def_readwrite("coeffs", &qp::TopArgs::coeffs)
      .def_readwrite("kq", &qp::TopArgs::kq)
      .def_readwrite("P", &qp::TopArgs::P)
      .def_readwrite("d", &qp::TopArgs::d)
      .def_readwrite("d_sb", &qp::TopArgs::d_sb)
      .def_readwrite("d_sl", &qp::TopArgs::d_sl)
      .def_readwrite("B", &qp::TopArgs::B)
      .def_readwrite("W", &qp::TopArgs::W)
      .def_readwrite("out", &qp::TopArgs::out);
  py::class_<ColorSpace>(m, "ColorSpace", "Lab white (XYZ) and the linear RGB <-> XYZ matrices (row-major).")
      .def(py::init<>())
      .def_readwrite("white", &ColorSpace::white)
      .def_readwrite("rgb_to_xyz", &ColorSpace::rgb_to_xyz)
      .def_readwrite("xyz_to_rgb", &ColorSpace::xyz_to_rgb);
  py::class_<ColorArgs>(m, "ColorArgs", "Fused stack colour: weights [W, 3], output space, out [B, 3].")
      .def(py::init<>())
      .def_readwrite("weights", &ColorArgs::weights)
      .def_readwrite("space", &ColorArgs::space)
      .def_readwrite("out", &ColorArgs::out);
  py::class_<PixelArgs>(m, "PixelArgs", "n pixels of 3 channels: pointer, kind, strides, out [n, 3].")
      .def(py::init<>())
      .def_readwrite("input", &PixelArgs::in)
      .def_readwrite("in_kind", &PixelArgs::in_kind)
      .def_readwrite("n", &PixelArgs::n)
      .def_readwrite("si", &PixelArgs::si)
      .def_readwrite("sc", &PixelArgs::sc)
      .def_readwrite("out", &PixelArgs::out);

  m.def("tmm_reflectance_cpu", [](const std::string& dtype, const TmmArgs& a) {
    run_typed(dtype, [&](auto t) { qp::tmm_reflectance_cpu<decltype(t)>(a); });
  });
  m.def("stack_color_cpu", [](const std::string& dtype, const TmmArgs& a, const ColorArgs& c, const ColorSpace& cs) {
    run_typed(dtype, [&](auto t) { qp::stack_color_cpu<decltype(t)>(a, c, cs); });
  });
  m.def("srgb_to_lab_cpu", [](const std::string& dtype, const PixelArgs& p, const ColorSpace& cs) {
    run_typed(dtype, [&](auto t) { qp::srgb_to_lab_cpu<decltype(t)>(p, cs); });
  });
  m.def("lab_to_srgb_cpu", [](const std::string& dtype, const PixelArgs& p, const ColorSpace& cs, bool clip) {
    run_typed(dtype, [&](auto t) { qp::lab_to_srgb_cpu<decltype(t)>(p, cs, clip); });
  });
  m.def(
      "_fastmath",
      [](const std::string& dtype, int fn, std::uintptr_t x, long long n, std::uintptr_t out) {
        run_typed(dtype, [&](auto t) {
          using T = decltype(t);
          fastmath_eval(fn, reinterpret_cast<const T*>(x), n, reinterpret_cast<T*>(out));
        });
      },
      "Test hook: elementwise fastmath cis (0), exp (1), log (2), cbrt (3) over n contiguous values.");
  // Test hooks: the CUDA kernels' bodies (qupaint/kernel_bodies.h) over their grids, on the CPU.
  m.def("_cuda_body_tmm_reflectance", [](const std::string& dtype, const TmmArgs& a) {
    run_typed(dtype, [&](auto t) {
      using T = decltype(t);
      const auto v = qp::tmm_view<T>(a);
      T* out = reinterpret_cast<T*>(a.out);
      emulate_grid(a.B * a.W, qp::TMM_BLOCK, [&](long long i) { qp::tmm_reflectance_body<T>(v, out, i); });
    });
  });
  m.def("_cuda_body_stack_color", [](const std::string& dtype, const TmmArgs& a, const ColorArgs& c,
                                     const ColorSpace& cs) {
    run_typed(dtype, [&](auto t) {
      using T = decltype(t);
      const auto v = qp::tmm_view<T>(a);
      const auto cv = qp::color_view<T>(c, cs);
      T* out = reinterpret_cast<T*>(c.out);
      emulate_grid(a.B, qp::STACK_COLOR_BLOCK, [&](long long b) { qp::stack_color_body<T>(v, cv, out, b); });
    });
  });
  m.def("_cuda_body_tmm_top", [](const std::string& dtype, const qp::TopArgs& a) {
    run_typed(dtype, [&](auto t) {
      using T = decltype(t);
      const auto v = qp::top_view<T>(a);
      T* out = reinterpret_cast<T*>(a.out);
      emulate_grid(a.B * a.W, qp::TMM_BLOCK, [&](long long i) { qp::tmm_top_body<T>(v, out, i); });
    });
  });
  m.def("_cuda_body_stack_color_top", [](const std::string& dtype, const qp::TopArgs& a,
                                         const ColorArgs& c, const ColorSpace& cs) {
    run_typed(dtype, [&](auto t) {
      using T = decltype(t);
      const auto v = qp::top_view<T>(a);
      const auto cv = qp::color_view<T>(c, cs);
      T* out = reinterpret_cast<T*>(c.out);
      emulate_grid(a.B, qp::STACK_COLOR_BLOCK, [&](long long b) { qp::stack_color_top_body<T>(v, cv, out, b); });
    });
  });
  m.def("_cuda_body_srgb_to_lab", [](const std::string& dtype, const PixelArgs& p, const ColorSpace& cs) {
    run_typed(dtype, [&](auto t) {
      using T = decltype(t);
      const auto m3 = qp::mat3_cast<T>(cs.rgb_to_xyz);
      T iw[3];
      qp::inverse_white(cs, iw);
      emulate_grid(p.n, qp::PIXEL_BLOCK, [&](long long i) {
        qp::srgb_to_lab_body<T>(reinterpret_cast<const void*>(p.in), p.in_kind, p.n, p.si, p.sc, m3, iw,
                                reinterpret_cast<T*>(p.out), i);
      });
    });
  });
  m.def("_cuda_body_lab_to_srgb", [](const std::string& dtype, const PixelArgs& p, const ColorSpace& cs,
                                     bool clip) {
    run_typed(dtype, [&](auto t) {
      using T = decltype(t);
      const auto m3 = qp::mat3_cast<T>(cs.xyz_to_rgb);
      const T w[3] = {T(cs.white[0]), T(cs.white[1]), T(cs.white[2])};
      emulate_grid(p.n, qp::PIXEL_BLOCK, [&](long long i) {
        qp::lab_to_srgb_body<T>(reinterpret_cast<const T*>(p.in), p.n, p.si, p.sc, w, m3, clip,
                                reinterpret_cast<T*>(p.out), i);
      });
    });
  });
  m.def(
      "synthia_finish_cpu",
      [](std::uintptr_t img, long long H, long long W, long long C, std::uintptr_t kernel, int r,
         float noise_std, std::uint32_t k1, std::uint32_t k2, std::uintptr_t lut, std::uintptr_t out) {
        py::gil_scoped_release release;
        qp::synthia_finish_cpu(img, H, W, C, kernel, r, noise_std, k1, k2, lut, out);
      });
  m.def("detect_blocks_cpu",
        [](std::uintptr_t img, long long H, long long W, std::uintptr_t lut, int saturation, long long b,
           long long h, long long w, std::uintptr_t small, std::uintptr_t sat) {
          py::gil_scoped_release release;
          qp::detect_blocks_cpu(img, H, W, lut, saturation, b, h, w, small, sat);
        });
  m.def("detect_contrast_cpu",
        [](std::uintptr_t img, long long H, long long W, std::uintptr_t lut, std::uintptr_t field, long long b,
           long long h, long long w, std::uintptr_t kernel, int r, std::uintptr_t out) {
          py::gil_scoped_release release;
          qp::detect_contrast_cpu(img, H, W, lut, field, b, h, w, kernel, r, out);
        });
  m.def("detect_flags_cpu",
        [](std::uintptr_t C, std::uintptr_t img, long long H, long long W, const qp::Vec3d& noise,
           int saturation, double fg_chi2, double floor_, double bright_level, double edge2,
           std::uintptr_t out) {
          py::gil_scoped_release release;
          qp::detect_flags_cpu(C, img, H, W, noise.data(), saturation, fg_chi2, floor_, bright_level,
                               edge2, out);
        });
  m.def("detect_open3_cpu", [](std::uintptr_t in, long long H, long long W, int bit, std::uintptr_t out) {
    py::gil_scoped_release release;
    qp::detect_open3_cpu(in, H, W, bit, out);
  });
  m.def("detect_median5_cpu",
        [](std::uintptr_t in, long long H, long long W, std::uintptr_t mask, std::uintptr_t out) {
          py::gil_scoped_release release;
          qp::detect_median5_cpu(in, H, W, mask, out);
        });
  m.def("detect_noise_cpu", [](std::uintptr_t C, std::uintptr_t img, long long H, long long W,
                               long long step, int saturation, std::uintptr_t out) {
    py::gil_scoped_release release;
    return qp::detect_noise_cpu(C, img, H, W, step, saturation, out);
  });
  m.def("detect_boxes_cpu", [](std::uintptr_t labels, long long H, long long W, long long n,
                               std::uintptr_t box, std::uintptr_t area) {
    py::gil_scoped_release release;
    qp::detect_boxes_cpu(labels, H, W, n, box, area);
  });
  m.def("detect_label_cpu", [](std::uintptr_t in, int itemsize, long long H, long long W, int conn8,
                               std::uintptr_t out) {
    py::gil_scoped_release release;
    return qp::detect_label_cpu(in, itemsize, H, W, conn8, out);
  });
  m.def("detect_hypotheses_cpu",
        [](std::uintptr_t M, std::uintptr_t a, long long p, std::uintptr_t mus, long long K, long long L,
           std::uintptr_t w, double max_chi2, int T, std::uintptr_t okw, std::uintptr_t thinw,
           std::uintptr_t nok, std::uintptr_t votes, std::uintptr_t best) {
          py::gil_scoped_release release;
          auto d = [](std::uintptr_t q) { return reinterpret_cast<double*>(q); };
          qp::detect_hypotheses_cpu(d(M), d(a), p, d(mus), K, L, d(w), max_chi2, T, d(okw), d(thinw),
                                    reinterpret_cast<long long*>(nok), d(votes), d(best));
        });
  m.def("detect_grow_cpu",
        [](std::uintptr_t own, long long h, long long w, std::uintptr_t cand, long long W,
           long long y0, long long x0, std::uintptr_t C, const qp::Vec3d& med, const qp::Vec3d& thr,
           int pad) { qp::detect_grow_cpu(own, h, w, cand, W, y0, x0, C, med.data(), thr.data(), pad); });
  m.def("detect_masked_quantiles_cpu",
        [](std::uintptr_t C, long long W, long long y0, long long x0, std::uintptr_t mask, long long mh,
           long long mw, std::uintptr_t q, int nq, std::uintptr_t out) {
          return qp::detect_masked_quantiles_cpu(C, W, y0, x0, mask, mh, mw,
                                                 reinterpret_cast<const double*>(q), nq, out);
        });
  m.def("detect_label_medians_cpu", [](std::uintptr_t labels, std::uintptr_t C, long long H,
                                       long long W, std::uintptr_t ids, long long m, std::uintptr_t out) {
    py::gil_scoped_release release;
    qp::detect_label_medians_cpu(labels, C, H, W, ids, m, out);
  });
  m.def("detect_smooth_cpu", [](std::uintptr_t a, int itemsize, long long h, long long w, long long nc,
                                std::uintptr_t wt, int r) {
    py::gil_scoped_release release;
    qp::detect_smooth_cpu(a, itemsize, h, w, nc, reinterpret_cast<const double*>(wt), r);
  });
  m.def("detect_terrace_classes_cpu",
        [](std::uintptr_t C, long long W, long long y0, long long x0, std::uintptr_t mask, long long mh,
           long long mw, std::uintptr_t mu, std::uintptr_t ids, long long R, const qp::Vec3d& noise,
           double rel, std::uintptr_t out) {
          qp::detect_terrace_classes_cpu(C, W, y0, x0, mask, mh, mw, reinterpret_cast<const double*>(mu),
                                         reinterpret_cast<const std::int32_t*>(ids), R, noise.data(),
                                         rel, out);
        });
  m.def("detect_masked_median_cpu",
        [](std::uintptr_t C, long long W, long long y0, long long x0, std::uintptr_t mask,
           long long mh, long long mw, std::uintptr_t out) {
          return qp::detect_masked_median_cpu(C, W, y0, x0, mask, mh, mw, out);
        });
  m.def("detect_ladder_cost_cpu",
        [](std::uintptr_t f0, std::uintptr_t f1, std::uintptr_t f2, std::uintptr_t w, long long T,
           long long G, long long P, long long L, double cap, std::uintptr_t out) {
          py::gil_scoped_release release;
          qp::detect_ladder_cost_cpu(f0, f1, f2, w, T, G, P, L, cap, out);
        });
  m.def(
      "pia_cpu",
      [](std::uintptr_t x, bool is_uint8, long long B, long long S, long long p, const qp::Vec3d& scale,
         const qp::Vec3d& shift, bool normalize, const ColorSpace& cs, std::uintptr_t out) {
        py::gil_scoped_release release;
        qp::pia_cpu(x, is_uint8, B, S, p, scale.data(), shift.data(), normalize, cs, out);
      });
#ifdef QUPAINT_WITH_CUDA
  m.def("tmm_reflectance_cuda", [](const std::string& dtype, const TmmArgs& a, std::uintptr_t stream) {
    run_typed(dtype, [&](auto t) { qp::tmm_reflectance_cuda<decltype(t)>(a, stream); });
  });
  m.def("tmm_top_cuda", [](const std::string& dtype, const qp::TopArgs& a, std::uintptr_t stream) {
    run_typed(dtype, [&](auto t) { qp::tmm_top_cuda<decltype(t)>(a, stream); });
  });
  m.def("stack_color_top_cuda", [](const std::string& dtype, const qp::TopArgs& a, const ColorArgs& c,
                                   const ColorSpace& cs, std::uintptr_t stream) {
    run_typed(dtype, [&](auto t) { qp::stack_color_top_cuda<decltype(t)>(a, c, cs, stream); });
  });
  m.def("stack_color_cuda", [](const std::string& dtype, const TmmArgs& a, const ColorArgs& c,
                               const ColorSpace& cs, std::uintptr_t stream) {
    run_typed(dtype, [&](auto t) { qp::stack_color_cuda<decltype(t)>(a, c, cs, stream); });
  });
  m.def("srgb_to_lab_cuda", [](const std::string& dtype, const PixelArgs& p, const ColorSpace& cs,
                               std::uintptr_t stream) {
    run_typed(dtype, [&](auto t) { qp::srgb_to_lab_cuda<decltype(t)>(p, cs, stream); });
  });
  m.def("lab_to_srgb_cuda", [](const std::string& dtype, const PixelArgs& p, const ColorSpace& cs,
                               bool clip, std::uintptr_t stream) {
    run_typed(dtype, [&](auto t) { qp::lab_to_srgb_cuda<decltype(t)>(p, cs, clip, stream); });
  });
#endif
}
