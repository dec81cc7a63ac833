#if LOWRANKOPTIM_SUBNAMESPACES
using LowRankOptim.Projection;
#endif
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LowRankOptim.Benchmarks;

/// <summary>One optimizer the step benchmark times: a stable id (used by <c>--methods</c> and in the tables) and its factory.</summary>
/// <param name="Id">The id, e.g. <c>GaLore</c>.</param>
/// <param name="Ranked">Whether the method has a rank (one case per rank) or not (one case per shape).</param>
/// <param name="Description">What is constructed, for the README and <c>--list-methods</c>.</param>
/// <param name="Create">Builds the optimizer over one parameter at a rank (ignored when not <paramref name="Ranked"/>).</param>
public sealed record StepMethod(string Id, bool Ranked, string Description, Func<Parameter, int, optim.Optimizer> Create);

/// <summary>
/// The optimizers of the step benchmark. Every low-rank method is built so that no subspace refresh happens
/// after the first step (the refresh period is <see cref="NoRefresh"/>): the first step, taken in the global
/// setup, does the one refresh (SVD, randomized sketch, DCT selection); the measured steps are steady-state steps.
/// </summary>
public static class StepMethods
{
    /// <summary>The refresh period that keeps refreshes out of the measured steps (only step 1 refreshes).</summary>
    public const int NoRefresh = int.MaxValue;

    /// <summary>The baseline every row is compared with: TorchSharp's own <c>torch.optim.AdamW</c>.</summary>
    public const string Baseline = "TorchAdamW";

    /// <summary>All methods this build knows, in table order.</summary>
    public static IReadOnlyList<StepMethod> All { get; } =
    [
        new(Baseline, false, "TorchSharp torch.optim.AdamW(lr 1e-3), the baseline",
            (p, _) => optim.AdamW([p], lr: 1e-3)),
        new("AdamW", false, "LowRank.AdamW (full space, torch.optim conventions)",
            (p, _) => LowRank.AdamW([p], lr: 1e-3)),
#if HAS_OPTIM_BITS
        new("AdamW8bit", false, "LowRank.AdamW(optim_bits: 8): block-wise 8-bit moments (fused QuantizedAdam kernel)",
            (p, _) => LowRank.AdamW([p], lr: 1e-3, optim_bits: 8)),
        new("AdamW4bit", false, "LowRank.AdamW(optim_bits: 4): block-wise 4-bit moments",
            (p, _) => LowRank.AdamW([p], lr: 1e-3, optim_bits: 4)),
#endif
        new("Smmf", false, "LowRank.Smmf (defaults; fused CPU kernel where it applies)",
            (p, _) => LowRank.Smmf([p], lr: 1e-3)),
        new("GaLore", true, "LowRank.GaLore, exact SVD projector (refresh only at step 1)",
            (p, r) => LowRank.GaLore([p], lr: 1e-3, rank: r, update_proj_gap: NoRefresh)),
        new("GaLoreRandomized", true, "LowRank.GaLore, projector: RandomizedSvd (p = 8, q = 2)",
            (p, r) => LowRank.GaLore([p], lr: 1e-3, rank: r, update_proj_gap: NoRefresh, projector: GaLoreProjector.RandomizedSvd)),
        // The steady-state step does not depend on how the basis was found, so the setup uses the randomized
        // projector: an exact SVD of 4096×11008 costs about a minute per case on 2 cores.
        new("GaLoreAdafactor", true, "LowRank.GaLoreAdafactor (Hugging Face defaults, relative step); basis by the randomized projector",
            (p, r) => LowRank.GaLoreAdafactor([new LowRankParamGroup([p])], rank: r, update_proj_gap: NoRefresh, projector: GaLoreProjector.RandomizedSvd)),
        new("DctAdamW", true, "LowRank.DctAdamW, sim_type FastTransform (column selection only at step 1)",
            (p, r) => LowRank.DctAdamW([p], lr: 1e-3, rank: r, update_proj_gap: NoRefresh, sim_type: DctTransformMethod.FastTransform, max_shape: long.MaxValue)),
        // OSD has no refresh: its basis takes one optimizer step every step (part of what is measured);
        // update_proj_gap only sets that step's size.
        new("OnlineSubspaceDescent", true, "LowRank.OnlineSubspaceDescent (defaults, T = 200; basis step every step, one SVD at step 1)",
            (p, r) => LowRank.OnlineSubspaceDescent([p], lr: 1e-3, rank: r)),
        new("GaLorePlus", true, "LowRank.GaLorePlus (no heads, no sparse residual; refresh only at step 1)",
            (p, r) => LowRank.GaLorePlus([new LowRankParamGroup([p])], lr: 1e-3, rank: r, update_proj_gap: NoRefresh)),
#if HAS_APOLLO
        // Compiled only against a library that has the APOLLO factories (HAS_APOLLO, see the .csproj). If their
        // signatures differ from these calls, this is the one place to adapt.
        new("Apollo", true, "LowRank.Apollo (refresh only at step 1)",
            (p, r) => LowRank.Apollo([p], lr: 1e-3, rank: r, update_proj_gap: NoRefresh)),
        new("ApolloMini", false, "LowRank.ApolloMini (rank 1, tensor-wise scaling; refresh only at step 1)",
            (p, _) => LowRank.ApolloMini([p], lr: 1e-3, update_proj_gap: NoRefresh)),
#endif
    ];

    /// <summary>The position of a method in <see cref="All"/> (int.MaxValue when unknown to this build).</summary>
    public static int IndexOf(string id)
    {
        for (var i = 0; i < All.Count; i++)
            if (All[i].Id == id) return i;
        return int.MaxValue;
    }

    /// <summary>The method with this id (case-insensitive), or null.</summary>
    public static StepMethod? Find(string id) => All.FirstOrDefault(m => string.Equals(m.Id, id, StringComparison.OrdinalIgnoreCase));
}
