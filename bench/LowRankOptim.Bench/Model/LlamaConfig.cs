namespace LowRankOptim.Bench.Model;

/// <summary>
/// A LLaMA-style decoder's shape. The named configurations are those of the GaLore repository's
/// <c>configs/llama_*.json</c> (hidden size, intermediate size, heads, layers; vocabulary 32,000), plus a
/// tiny default that trains in minutes on 2 cores with byte-level tokens.
/// </summary>
public sealed record LlamaConfig(string Name, int VocabSize, int Hidden, int Intermediate, int Heads, int KvHeads, int Layers, int MaxSequence, double RmsEps = 1e-6)
{
    /// <summary>Per-head width d_h = hidden / heads.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>The named configurations, by name.</summary>
    public static IReadOnlyDictionary<string, LlamaConfig> Named { get; } = new[]
    {
        new LlamaConfig("tiny", 256, 128, 352, 4, 4, 4, 128),
        new LlamaConfig("9m", 32000, 128, 352, 4, 4, 4, 1024),
        new LlamaConfig("20m", 32000, 256, 688, 4, 4, 4, 1024),
        new LlamaConfig("35m", 32000, 384, 1024, 8, 8, 6, 1024),
        new LlamaConfig("60m", 32000, 512, 1376, 8, 8, 8, 1024),
        new LlamaConfig("130m", 32000, 768, 2048, 12, 12, 12, 1024),
        new LlamaConfig("350m", 32000, 1024, 2736, 16, 16, 24, 1024),
        new LlamaConfig("1b", 32000, 2048, 5461, 32, 32, 24, 1024),
        new LlamaConfig("7b", 32000, 4096, 11008, 32, 32, 32, 2048),
    }.ToDictionary(c => c.Name);

    /// <summary>
    /// The head layout of an attention projection, by module or parameter name (GaLore+'s cross-head projection):
    /// q_proj with <see cref="Heads"/> and k_proj/v_proj with <see cref="KvHeads"/> heads along the rows, o_proj with
    /// <see cref="Heads"/> heads along the columns; null for every other weight.
    /// </summary>
    public LowRankOptim.AttentionHeads? AttentionHeadsOf(string name)
    {
        var module = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : name;
        var last = module[(module.LastIndexOf('.') + 1)..];
        return last switch
        {
            "q_proj" => LowRankOptim.AttentionHeads.QueryKeyValue(Heads),
            "k_proj" or "v_proj" => LowRankOptim.AttentionHeads.QueryKeyValue(KvHeads),
            "o_proj" => LowRankOptim.AttentionHeads.Output(Heads),
            _ => null,
        };
    }

    /// <summary>Checks the shape is consistent; throws naming the field.</summary>
    public LlamaConfig Validated()
    {
        if (Hidden % Heads != 0) throw new ArgumentException($"hidden size {Hidden} must be divisible by heads {Heads}.");
        if (Heads % KvHeads != 0) throw new ArgumentException($"heads {Heads} must be divisible by key/value heads {KvHeads} (grouped-query attention).");
        if (HeadDim % 2 != 0) throw new ArgumentException($"head dimension {HeadDim} must be even for rotary embeddings.");
        return this;
    }

    /// <summary>The shapes of every parameter, in the model's parameter order, without building it.</summary>
    public IEnumerable<(string Name, long[] Shape)> ParameterShapes()
    {
        yield return ("embed.weight", [VocabSize, Hidden]);
        for (var i = 0; i < Layers; i++)
        {
            var p = $"layers.{i}.";
            yield return (p + "attn_norm.weight", [Hidden]);
            yield return (p + "attn.q_proj.weight", [Heads * HeadDim, Hidden]);
            yield return (p + "attn.k_proj.weight", [KvHeads * HeadDim, Hidden]);
            yield return (p + "attn.v_proj.weight", [KvHeads * HeadDim, Hidden]);
            yield return (p + "attn.o_proj.weight", [Hidden, Heads * HeadDim]);
            yield return (p + "mlp_norm.weight", [Hidden]);
            yield return (p + "mlp.gate_proj.weight", [Intermediate, Hidden]);
            yield return (p + "mlp.up_proj.weight", [Intermediate, Hidden]);
            yield return (p + "mlp.down_proj.weight", [Hidden, Intermediate]);
        }
        yield return ("norm.weight", [Hidden]);
        yield return ("lm_head.weight", [VocabSize, Hidden]);
    }
}
