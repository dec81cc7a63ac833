using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Model;

/// <summary>RMSNorm: x / √(mean(x²) + ε) · w, normalized in float32 for narrower inputs (as Hugging Face's LlamaRMSNorm).</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    public RmsNorm(long size, double eps, ScalarType dtype = ScalarType.Float32) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones(size, dtype: dtype));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // Out-of-place: autograd keeps these intermediates for the backward pass. A bfloat16 mean of squares
        // loses the small entries, so the statistics are float32 (a no-op for float32 inputs).
        var wide = x.to(ScalarType.Float32);
        var normed = wide.mul(wide.square().mean([-1], keepdim: true).add(_eps).rsqrt()).to(x.dtype);
        return normed.mul(weight).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Rotary position embedding (Su et al.) in the LLaMA/Hugging Face layout: dimension i is paired with
/// i + d/2, rotated by the angle p·θ_i, θ_i = 10000^(−2i/d).
/// </summary>
public sealed class RotaryEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Tensor cos;
    private readonly Tensor sin;

    public RotaryEmbedding(int headDim, int maxPositions, double theta = 10000.0) : base(nameof(RotaryEmbedding))
    {
        using var scope = NewDisposeScope();
        var inv = pow(theta, arange(0, headDim, 2, dtype: float64).div_(headDim)).reciprocal_();   // d/2
        var angles = outer(arange(maxPositions, dtype: float64), inv);                              // P × d/2
        var full = cat([angles, angles], -1);                                                      // P × d
        cos = full.cos().to(float32).DetachFromDisposeScope();
        sin = full.sin().to(float32).DetachFromDisposeScope();
        register_buffer("cos", cos, persistent: false);
        register_buffer("sin", sin, persistent: false);
    }

    /// <summary>Rotates x of shape (batch, heads, positions, d) at positions 0 … T−1.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var t = x.shape[^2];
        var half = x.shape[^1] / 2;
        var c = cos.narrow(0, 0, t).to(x.dtype);
        var s = sin.narrow(0, 0, t).to(x.dtype);
        var rotated = cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
        return x.mul(c).add_(rotated.mul_(s)).MoveToOuterDisposeScope();
    }
}

/// <summary>Causal multi-head attention with grouped-query support (fewer key/value heads).</summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly Linear q_proj, k_proj, v_proj, o_proj;
    private readonly RotaryEmbedding rotary;
    private readonly int _heads, _kvHeads, _headDim;

    public Attention(LlamaConfig c, ScalarType dtype = ScalarType.Float32) : base(nameof(Attention))
    {
        (_heads, _kvHeads, _headDim) = (c.Heads, c.KvHeads, c.HeadDim);
        q_proj = nn.Linear(c.Hidden, c.Heads * c.HeadDim, hasBias: false, dtype: dtype);
        k_proj = nn.Linear(c.Hidden, c.KvHeads * c.HeadDim, hasBias: false, dtype: dtype);
        v_proj = nn.Linear(c.Hidden, c.KvHeads * c.HeadDim, hasBias: false, dtype: dtype);
        o_proj = nn.Linear(c.Heads * c.HeadDim, c.Hidden, hasBias: false, dtype: dtype);
        rotary = new RotaryEmbedding(c.HeadDim, c.MaxSequence);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.shape[0], x.shape[1]);
        var q = rotary.call(q_proj.call(x).view(b, t, _heads, _headDim).transpose(1, 2));
        var k = rotary.call(k_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2));
        var v = v_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        if (_kvHeads != _heads)
        {
            k = k.repeat_interleave(_heads / _kvHeads, dim: 1);
            v = v.repeat_interleave(_heads / _kvHeads, dim: 1);
        }
        var y = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        return o_proj.call(y.transpose(1, 2).reshape(b, t, _heads * _headDim)).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)).</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear gate_proj, up_proj, down_proj;

    public SwiGluMlp(LlamaConfig c, ScalarType dtype = ScalarType.Float32) : base(nameof(SwiGluMlp))
    {
        gate_proj = nn.Linear(c.Hidden, c.Intermediate, hasBias: false, dtype: dtype);
        up_proj = nn.Linear(c.Hidden, c.Intermediate, hasBias: false, dtype: dtype);
        down_proj = nn.Linear(c.Intermediate, c.Hidden, hasBias: false, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(nn.functional.silu(gate_proj.call(x)).mul(up_proj.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-norm decoder block: x + attn(norm(x)), then + mlp(norm(·)).</summary>
public sealed class DecoderBlock : nn.Module<Tensor, Tensor>
{
    private readonly RmsNorm attn_norm, mlp_norm;
    private readonly Attention attn;
    private readonly SwiGluMlp mlp;

    public DecoderBlock(LlamaConfig c, ScalarType dtype = ScalarType.Float32) : base(nameof(DecoderBlock))
    {
        attn_norm = new RmsNorm(c.Hidden, c.RmsEps, dtype);
        attn = new Attention(c, dtype);
        mlp_norm = new RmsNorm(c.Hidden, c.RmsEps, dtype);
        mlp = new SwiGluMlp(c, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.add(attn.call(attn_norm.call(x)));
        return h.add(mlp.call(mlp_norm.call(h))).MoveToOuterDisposeScope();
    }
}
