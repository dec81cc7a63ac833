using TorchSharp;

namespace LowRankOptim.Projection;

/// <summary>
/// The per-parameter subspace: owns its basis and knows when to refresh it. Gradients come in as
/// matrices of the shape the config chose; projected gradients have <see cref="ProjectedShape"/>.
/// </summary>
public interface ISubspace : IStatefulComponent
{
    /// <summary>The shape of a projected gradient (and therefore of the rule's moments).</summary>
    long[] ProjectedShape { get; }

    /// <summary>True once a basis exists.</summary>
    bool HasBasis { get; }

    /// <summary>True when the basis must be recomputed before the update of 1-based step <paramref name="step"/>.</summary>
    bool NeedsRefresh(long step);

    /// <summary>Recomputes the basis from <paramref name="gradient"/>; on failure the previous basis is kept and the exception propagates.</summary>
    void Refresh(torch.Tensor gradient, long step);

    /// <summary>Projects a full gradient matrix into the subspace.</summary>
    torch.Tensor Project(torch.Tensor gradient);

    /// <summary>Maps a low-rank tensor back to the full matrix, including the projection's scale α.</summary>
    torch.Tensor ProjectBack(torch.Tensor lowRank);

    /// <summary>
    /// target ← target + alpha · ProjectBack(lowRank), as one fused <c>addmm_</c> where the side allows.
    /// </summary>
    void AddProjectedBack(torch.Tensor target, torch.Tensor lowRank, double alpha);
}
