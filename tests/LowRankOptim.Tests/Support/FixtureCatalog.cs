using System.Text.Json.Nodes;
using LowRankOptim.Projection;
using LowRankOptim.Rules;
using TorchSharp;
using TorchSharp.Modules;

namespace LowRankOptim.Tests.Support;

/// <summary>How each fixture `algorithm` maps onto a <see cref="LowRankOptimizer"/> configuration.</summary>
public static class FixtureCatalog
{
    public const string NotImplementedReason = "not implemented yet";

    /// <summary>Algorithms with fixtures whose optimizer does not exist yet: their cases are skipped.</summary>
    public static readonly IReadOnlySet<string> NotImplemented = new HashSet<string> { "osd_adamw", "dct_adamw" };

    /// <summary>Builds the optimizer a fixture describes over <paramref name="parameters"/> (by fixture name).</summary>
    /// <param name="f">The fixture.</param>
    /// <param name="parameters">Its parameters by name.</param>
    /// <param name="kernel">The kernel of rules that have one (SMMF).</param>
    public static LowRankOptimizer Build(GoldenFixture f, IReadOnlyDictionary<string, Parameter> parameters, KernelPreference kernel = KernelPreference.Auto)
    {
        var o = f.Optimizer;
        LowRankOptions defaults = f.Algorithm switch
        {
            "adamw_hf" or "galore_adamw" => new LowRankOptions
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
            _ => throw new NotSupportedException($"fixture {f.Name}: unknown algorithm '{f.Algorithm}'"),
        };
        var groups = f.Groups.Select(g => new LowRankParamGroup(
            g["params"]!.AsArray().Select(n => parameters[(string)n!]),
            new LowRankOptions
            {
                LearningRate = (double?)g["lr"],
                WeightDecay = (double?)g["weight_decay"],
                Projection = g.ContainsKey("rank") ? Projection(g) : null,
            })).ToList();
        return new LowRankOptimizer(groups, defaults);
    }

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
