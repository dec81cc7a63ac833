using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Model;

/// <summary>A LLaMA-style causal language model: embedding, decoder blocks, final RMSNorm, untied LM head.</summary>
public sealed class LlamaModel : nn.Module<Tensor, Tensor>
{
    private readonly Embedding embed;
    private readonly ModuleList<DecoderBlock> layers;
    private readonly RmsNorm norm;
    private readonly Linear lm_head;

    public LlamaModel(LlamaConfig config, long seed) : base(nameof(LlamaModel))
    {
        Config = config.Validated();
        embed = nn.Embedding(config.VocabSize, config.Hidden);
        layers = new ModuleList<DecoderBlock>(Enumerable.Range(0, config.Layers).Select(_ => new DecoderBlock(config)).ToArray());
        norm = new RmsNorm(config.Hidden, config.RmsEps);
        lm_head = nn.Linear(config.Hidden, config.VocabSize, hasBias: false);
        RegisterComponents();
        Initialize(seed);
    }

    public LlamaConfig Config { get; }

    /// <summary>N(0, 0.02²) for every matrix (the configs' initializer_range), ones for the norms; seeded.</summary>
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
        var logits = call(block.narrow(1, 0, t));
        var loss = nn.functional.cross_entropy(logits.reshape(-1, Config.VocabSize), block.narrow(1, 1, t).reshape(-1));
        return loss.MoveToOuterDisposeScope();
    }
}
