//! SwiGLU (NUMERICS.md section 8) of the fast variants, and GeGLU (section
//! 11) of every variant.

use super::Kernels;

/// SwiGLU (NUMERICS.md section 8) on rows of `g` in place with `u`:
/// `g_i = (g_i / (1 + exp(-g_i))) * u_i`, the exp from
/// [`Kernels::exp_sub`] (`exp((-g) - 0) = exp(-g)`: subtracting zero is
/// exact). Same bits as [`super::scalar::silu_mul`]. `tmp` is scratch.
pub fn silu_mul(k: &Kernels, g: &mut [f32], u: &[f32], tmp: &mut Vec<f32>) {
    assert_eq!(g.len(), u.len());
    // SAFETY: see the dispatch module; lengths checked.
    unsafe { (k.ops().silu_mul)(k, g, u, tmp) }
}

/// [`silu_mul`] of the SIMD variants: the exp of their
/// [`Kernels::exp_sub`], the rest element-wise.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn silu_mul_exp(k: &Kernels, g: &mut [f32], u: &[f32], tmp: &mut Vec<f32>) {
    tmp.clear();
    tmp.extend(g.iter().map(|&v| -v));
    let (neg, e) = {
        let n = g.len();
        tmp.resize(2 * n, 0.0);
        tmp.split_at_mut(n)
    };
    k.exp_sub(neg, 0.0, e);
    for ((gi, &ui), &ei) in g.iter_mut().zip(u).zip(e.iter()) {
        *gi = (*gi / (1.0 + ei)) * ui;
    }
}

/// `2 * sqrt(2 / pi)` rounded to f32: GELU's tanh argument, doubled.
pub const GELU_K2: f32 = 1.595_769_2;
/// The cubic coefficient of GELU's tanh approximation.
pub const GELU_A: f32 = 0.044_715;

/// GeGLU with the tanh-approximation GELU (NUMERICS.md section 11) on rows
/// of `g` in place with `u`: `y = (K2 * g_i) * (1 + (A * g_i) * g_i)`, then
/// `g_i = (g_i / (1 + exp(-y))) * u_i` (`0.5 x (1 + tanh(y / 2))` is
/// `x / (1 + exp(-y))`: tanh written with the own exp, no libm). The exp is
/// [`Kernels::exp_sub`] of the variant, which gives the bits of
/// [`super::math::exp`] in every variant, the rest element-wise: the same
/// bits everywhere. `tmp` is scratch.
pub fn gelu_mul(k: &Kernels, g: &mut [f32], u: &[f32], tmp: &mut Vec<f32>) {
    assert_eq!(g.len(), u.len());
    let n = g.len();
    tmp.clear();
    tmp.extend(
        g.iter()
            .map(|&x| -((GELU_K2 * x) * (1.0 + (GELU_A * x) * x))),
    );
    tmp.resize(2 * n, 0.0);
    let (neg, e) = tmp.split_at_mut(n);
    k.exp_sub(neg, 0.0, e);
    for ((gi, &ui), &ei) in g.iter_mut().zip(u).zip(e.iter()) {
        *gi = (*gi / (1.0 + ei)) * ui;
    }
}
