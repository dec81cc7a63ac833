using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// The per-parameter subspace: owns its basis and knows when to refresh it. Gradients come in as
/// matrices of the shape the config chose; projected gradients have <see cref="ProjectedShape"/>.
/// Per step the optimizer calls <see cref="NeedsRefresh"/> (and <see cref="Refresh"/> when due),
/// <see cref="Project"/>, <see cref="AddProjectedBack"/> and finally <see cref="AfterUpdate"/>.
/// </summary>
public interface ISubspace : IStatefulComponent
{
    /// <summary>The shape of a projected gradient (and therefore of the rule's moments).</summary>
    long[] ProjectedShape { get; }

    /// <summary>True once a basis exists.</summary>
    bool HasBasis { get; }

    /// <summary>True when the basis must be recomputed before the update of 1-based step <paramref name="step"/>.</summary>
    /// <param name="step">k, the 1-based step about to be taken.</param>
    bool NeedsRefresh(long step);

    /// <summary>
    /// Recomputes the basis from <paramref name="gradient"/> (finite, checked by the caller); on failure the
    /// previous basis is kept and the exception propagates. Returns the projection of
    /// <paramref name="gradient"/> onto the new basis when the refresh computed it anyway (owned by the
    /// caller's dispose scope), or null, in which case the caller calls <see cref="Project"/>.
    /// </summary>
    /// <param name="gradient">G, the step's gradient matrix (finite).</param>
    /// <param name="context">The step's context.</param>
    torch.Tensor? Refresh(torch.Tensor gradient, in SubspaceContext context);

    /// <summary>Projects a full gradient matrix into the subspace.</summary>
    /// <param name="gradient">G, a gradient matrix of the subspace's shape.</param>
    torch.Tensor Project(torch.Tensor gradient);

    /// <summary>Maps a low-rank tensor back to the full matrix, including the projection's scale α.</summary>
    /// <param name="lowRank">A tensor of <see cref="ProjectedShape"/>.</param>
    torch.Tensor ProjectBack(torch.Tensor lowRank);

    /// <summary>
    /// target ← target + alpha · ProjectBack(lowRank), as one fused <c>addmm_</c> where the side allows.
    /// </summary>
    /// <param name="target">The full matrix, updated in place.</param>
    /// <param name="lowRank">A tensor of <see cref="ProjectedShape"/>.</param>
    /// <param name="alpha">The factor (the scale α is applied on top).</param>
    void AddProjectedBack(torch.Tensor target, torch.Tensor lowRank, double alpha);

    /// <summary>
    /// The apply phase: writes this step's update into <see cref="SubspaceUpdate.Target"/>. A subspace whose
    /// update is the back-projected direction, W ← W − c·Back(N), calls <see cref="AddProjectedBack"/>; others
    /// (GaLore+'s sparse residual, APOLLO's scaled gradient) add their own terms. Decoupled weight decay is
    /// applied around it by the engine.
    /// </summary>
    /// <param name="update">The step's tensors and contexts.</param>
    void Apply(in SubspaceUpdate update);

    /// <summary>
    /// True (the default) when <see cref="Apply"/> or <see cref="AfterUpdate"/> read the step's full gradient
    /// matrix (<see cref="SubspaceUpdate.Gradient"/>, AfterUpdate's <c>gradient</c>), as APOLLO's scaled gradient,
    /// GaLore+'s sparse residual and Online Subspace Descent's basis step do. False promises that the step after
    /// <see cref="Project"/> needs R only: the per-layer mode then releases the full gradient right after projecting
    /// it, accumulates micro-batches in the projected space, and passes a null gradient matrix to both.
    /// </summary>
    bool ReadsGradientAfterProjection => true;

    /// <summary>
    /// Called once the weight update of this step has been applied, with the step's gradient matrix and its
    /// projection; subspaces that learn their basis online (Online Subspace Descent) update it here. Throws
    /// <see cref="SubspaceRefreshException"/> when the basis cannot be updated (it is then kept unchanged).
    /// </summary>
    /// <param name="gradient">G, the step's gradient matrix.</param>
    /// <param name="projected">R = Proj(G), the rule's input this step.</param>
    /// <param name="context">The step's context.</param>
    void AfterUpdate(torch.Tensor gradient, torch.Tensor projected, in SubspaceContext context);

    /// <summary>
    /// Data-parallel training (docs/distributed.md): what of 1-based step <paramref name="step"/>'s gradient must be
    /// summed over ranks, asked before the refresh phase. The default, <see cref="GradientExchange.Full"/>, is always
    /// correct. A subspace whose refresh, apply and after phases read only R = <see cref="Project"/>(G) on a step
    /// (never G itself) returns <see cref="GradientExchange.Projected"/> for it: r·n numbers are summed instead of m·n.
    /// </summary>
    /// <param name="step">The 1-based step.</param>
    GradientExchange Exchange(long step) => GradientExchange.Full;

    /// <summary>
    /// True when <see cref="AfterUpdate"/> moves the basis after every step (Online Subspace Descent). When a step is
    /// skipped because its gradient is unusable, the engine reports the basis step that was not taken as a failed
    /// refresh, as it reports a refresh that was due.
    /// </summary>
    bool UpdatesBasisAfterEveryStep => false;
}

/// <summary>What the apply phase hands a subspace: the step's tensors and contexts.</summary>
/// <param name="Target">The weight as an m×n view, updated in place.</param>
/// <param name="Gradient">G, the step's gradient matrix in the working dtype (L2 decay added, if any).</param>
/// <param name="Projected">R = Proj(G), the rule's input this step.</param>
/// <param name="Direction">N, the rule's direction in the projected shape (read only: may be a state tensor).</param>
/// <param name="Coefficient">c, the rule's step size: the plain update is W ← W − c·Back(N).</param>
/// <param name="Rule">The rule context of the step (config, learning rate, decay).</param>
/// <param name="Context">The subspace context of the step.</param>
public readonly record struct SubspaceUpdate(
    torch.Tensor Target, torch.Tensor Gradient, torch.Tensor Projected, torch.Tensor Direction, double Coefficient,
    RuleContext Rule, SubspaceContext Context);
