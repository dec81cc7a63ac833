using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;

namespace LowRankOptim.Tests.Support;

/// <summary>How each fixture `algorithm` maps onto a <see cref="LowRankOptimizer"/> configuration.</summary>
public static class FixtureCatalog
{
    public const string NotImplementedReason = "not implemented yet";

    /// <summary>Algorithms with fixtures whose optimizer does not exist yet: their cases are skipped.</summary>
    public static readonly IReadOnlySet<string> NotImplemented = new HashSet<string>();

    /// <summary>Builds the optimizer a fixture describes over <paramref name="parameters"/> (by fixture name).</summary>
    /// <param name="f">The fixture.</param>
    /// <param name="parameters">Its parameters by name.</param>
    /// <param name="kernel">The kernel of rules that have one (SMMF).</param>
    /// <param name="dctMethod">How DCT cases compute G·C (the fixtures record the matrix product's results; the fast transform must reproduce them).</param>
    public static LowRankOptimizer Build(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters,
        KernelPreference kernel = KernelPreference.Auto, DctTransformMethod dctMethod = DctTransformMethod.MatrixProduct)
    {
        var o = f.Optimizer;
        LowRankOptions defaults = f.Algorithm switch
        {
            "adamw_hf" or "galore_adamw" or "osd_adamw" => new LowRankOptions
            {
                LearningRate = (double)o["lr"]!,
                WeightDecay = (double)o["weight_decay"]!,
                DecayOrder = WeightDecayOrder.AfterUpdate,
                Projection = FullSpace.Instance,
                Rule = new AdamConfig((double)o["betas"]![0]!, (double)o["betas"]![1]!, (double)o["eps"]!,
                    (bool)o["correct_bias"]!, AdamEpsilonMode.BeforeBiasCorrection),
            },
            "galore_adafactor" => new LowRankOptions
            {
                LearningRate = (double?)o["lr"] ?? 0.0,
                WeightDecay = (double)o["weight_decay"]!,
                DecayOrder = WeightDecayOrder.BeforeUpdate,
                Projection = FullSpace.Instance,
                Rule = new AdafactorConfig((double?)o["beta1"], (double)o["eps"]![0]!, (double)o["eps"]![1]!,
                    (double)o["clip_threshold"]!, (double)o["decay_rate"]!, (bool)o["relative_step"]!,
                    (bool)o["scale_parameter"]!, (bool)o["warmup_init"]!),
            },
            "smmf" => new LowRankOptions
            {
                LearningRate = (double)o["lr"]!,
                WeightDecay = (double)o["weight_decay"]!,
                DecayOrder = (string)o["weight_decay_mode"]! switch
                {
                    "adamw" => WeightDecayOrder.BeforeUpdate,
                    // The reference's "adam" mode is a no-op (fixtures README); ours is L2, so no fixture uses it.
                    var mode => throw new NotSupportedException($"fixture {f.Name}: weight_decay_mode '{mode}'"),
                },
                Projection = FullSpace.Instance,
                Rule = new SmmfConfig((double?)o["beta"], (double)o["eps"]!, (double)o["decay_rate"]!,
                    (double)o["growth_rate"]!, (bool)o["vector_reshape"]!, kernel),
            },
            // DCT-AdamW's options are optimizer-wide: every group projects its matrices (1-D tensors stay in
            // the full space); torch-style ε and decay before the update.
            "dct_adamw" => new LowRankOptions
            {
                LearningRate = (double)o["lr"]!,
                WeightDecay = (double)o["weight_decay"]!,
                DecayOrder = WeightDecayOrder.BeforeUpdate,
                Projection = DctProjectionOf(f, dctMethod),
                Rule = new AdamConfig((double)o["betas"]![0]!, (double)o["betas"]![1]!, (double)o["eps"]!, true, AdamEpsilonMode.AfterBiasCorrection),
            },
            _ => throw new NotSupportedException($"fixture {f.Name}: unknown algorithm '{f.Algorithm}'"),
        };
        var groups = f.Groups.Select(g => new LowRankParamGroup(
            g["params"]!.AsArray().Select(n => parameters[(string)n!]),
            new LowRankOptions
            {
                LearningRate = (double?)g["lr"],
                WeightDecay = (double?)g["weight_decay"],
                Projection = g.ContainsKey("rank") ? (f.Algorithm == "osd_adamw" ? OnlinePca(g) : Projection(g)) : null,
            })).ToList();
        return new LowRankOptimizer(groups, defaults);
    }

    private static DctProjection DctProjectionOf(GoldenFixture f, DctTransformMethod method)
    {
        var o = f.Optimizer;
        if ((string)o["proj"]! != "dct") throw new NotSupportedException($"fixture {f.Name}: proj '{o["proj"]}' (only 'dct')");
        if ((bool)o["rotate_subspace"]! || (bool)o["use_ef"]!) throw new NotSupportedException($"fixture {f.Name}: rotate_subspace / use_ef");
        // The reference's 'makhoul' transforms with the transposed basis; only its 'matmul' basis is implemented.
        if ((string)o["sim_type"]! != "matmul") throw new NotSupportedException($"fixture {f.Name}: sim_type '{o["sim_type"]}'");
        return new DctProjection((int)o["rank"]!, (int)o["update_proj_gap"]!, 1.0, method, (double)o["ell_norm"]!, (long)o["max_shape"]!);
    }

    // OSD "continuous": P's optimizer is torch.optim.AdamW with its defaults (weight decay 0.01).
    private static OnlinePcaProjection OnlinePca(JsonObject g) => (string)g["proj_type"]! == "continuous"
        ? new OnlinePcaProjection((int)g["rank"]!, (int)g["update_proj_gap"]!, (double)g["scale"]!,
            BasisRule: new AdamConfig(0.9, 0.999, 1e-8, true, AdamEpsilonMode.AfterBiasCorrection), BasisWeightDecay: 0.01)
        : throw new NotSupportedException($"unknown OSD proj_type '{g["proj_type"]}'");

    private static SvdProjection Projection(JsonObject g) => new(
        (int)g["rank"]!, (int)g["update_proj_gap"]!, (double)g["scale"]!, (string)g["proj_type"]! switch
        {
            "std" => ProjectionType.Std,
            "reverse_std" => ProjectionType.ReverseStd,
            "left" => ProjectionType.Left,
            "right" => ProjectionType.Right,
            "full" => ProjectionType.Full,
            var t => throw new NotSupportedException($"unknown proj_type '{t}'"),
        });
}
