using LowRankOptim.Rules;
using TorchSharp;

namespace LowRankOptim.Projection;

/// <summary>
/// A subspace that also contributes a sparse term in the full space to the weight update (GaLore+'s sparsely
/// coded residual). The optimizer calls <see cref="AddSparseUpdate"/> once per step, right after the
/// back-projected update has been added to the weight and before <see cref="ISubspace.AfterUpdate"/>;
/// decoupled weight decay is applied around both terms as for any subspace.
/// </summary>
public interface ISparseUpdateSubspace : ISubspace
{
    /// <summary>
    /// Updates the sparse state from this step's gradient matrix and its projection, and adds the sparse term
    /// (W ← W − c_e·α_e·scatter(Ω, d_e)) to <paramref name="target"/>, the weight viewed as a matrix.
    /// </summary>
    /// <param name="target">The weight as an m×n view (updated in place).</param>
    /// <param name="gradient">The step's gradient matrix, in the working dtype.</param>
    /// <param name="projected">Its projection onto the current basis (the rule's input this step).</param>
    /// <param name="rule">The rule context of the step: the group's rule config and current learning rate.</param>
    /// <param name="context">The subspace context of the step.</param>
    void AddSparseUpdate(torch.Tensor target, torch.Tensor gradient, torch.Tensor projected, in RuleContext rule, in SubspaceContext context);
}
