using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Model;

/// <summary>
/// A LLaMA-style causal language model: embedding, decoder blocks, final RMSNorm, untied LM head. Built directly in
/// its dtype (bfloat16 for the large configurations): no float32 copy of the weights is ever allocated.
/// </summary>
public sealed class LlamaModel : nn.Module<Tensor, Tensor>
{
    private readonly Embedding embed;
    private readonly ModuleList<DecoderBlock> layers;
    private readonly RmsNorm norm;
    private readonly Linear lm_head;

    /// <param name="config">The shape.</param>
    /// <param name="seed">The initialization's seed.</param>
    /// <param name="dtype">The weights' dtype (float32 or bfloat16).</param>
    public LlamaModel(LlamaConfig config, long seed, ScalarType dtype = ScalarType.Float32) : base(nameof(LlamaModel))
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"dtype {dtype} is not supported: the model is built in float32 or bfloat16.", nameof(dtype));
        Config = config.Validated();
        DType = dtype;
        embed = nn.Embedding(config.VocabSize, config.Hidden, dtype: dtype);
        layers = new ModuleList<DecoderBlock>(Enumerable.Range(0, config.Layers).Select(_ => new DecoderBlock(config, dtype)).ToArray());
        norm = new RmsNorm(config.Hidden, config.RmsEps, dtype);
        lm_head = nn.Linear(config.Hidden, config.VocabSize, hasBias: false, dtype: dtype);
        RegisterComponents();
        Initialize(seed);
    }

    public LlamaConfig Config { get; }

    /// <summary>The weights' dtype.</summary>
    public ScalarType DType { get; }

    /// <summary>
    /// N(0, 0.02²) for every matrix (the configs' initializer_range), ones for the norms; seeded. The draws are
    /// float32 and rounded to the weights' dtype, so a bfloat16 model starts from the float32 model's values rounded.
    /// </summary>
    private void Initialize(long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (p.dim() == 1) p.fill_(1.0);
            else using (var v = normal(0, 0.02, p.shape, generator: gen)) p.copy_(v);
        }
    }

    /// <summary>Token ids (batch, T) → logits (batch, T, vocab).</summary>
    public override Tensor forward(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var h = embed.call(tokens);
        foreach (var layer in layers) h = layer.call(h);
        return lm_head.call(norm.call(h)).MoveToOuterDisposeScope();
    }

    /// <summary>Mean next-token cross-entropy of a (batch, T + 1) block of tokens.</summary>
    public Tensor Loss(Tensor block)
    {
        using var scope = NewDisposeScope();
        var t = block.shape[1] - 1;
        // The loss in float32 whatever the weights' dtype (a no-op for float32 logits).
        var logits = call(block.narrow(1, 0, t)).to(ScalarType.Float32);
        var loss = nn.functional.cross_entropy(logits.reshape(-1, Config.VocabSize), block.narrow(1, 1, t).reshape(-1));
        return loss.MoveToOuterDisposeScope();
    }
}
