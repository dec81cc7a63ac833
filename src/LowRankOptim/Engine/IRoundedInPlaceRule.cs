using LowRankOptim.Kernels;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// A rule whose full-space step of stochastically rounded bfloat16 weights (<see cref="WeightRounding"/>) needs no
/// direction tensor of the parameter's size: it computes its direction a part at a time and hands each part to the weight
/// kernel with the part's flat offset, so the result equals <see cref="IUpdateRule.Compute"/> followed by
/// <see cref="RoundedWeightUpdate"/> bit for bit, with a bounded workspace. Internal: the engine asks it before
/// <see cref="IUpdateRule.Compute"/>; a rule without it (or declining) goes through the direction of the whole parameter.
/// </summary>
internal interface IRoundedInPlaceRule
{
    /// <summary>
    /// Updates the state with <paramref name="gradient"/> and the weights with W ← round((W·before − c·U)·after), the
    /// rounding and both decay factors in <paramref name="weights"/> (its coefficient and offset are the rule's to set);
    /// or changes nothing and returns false.
    /// </summary>
    /// <param name="parameter">The bf16 parameter, updated in place.</param>
    /// <param name="gradient">Its gradient in the rule's working dtype.</param>
    /// <param name="context">The step's context.</param>
    /// <param name="kernel">The weight kernel chosen for the parameter.</param>
    /// <param name="weights">The decay factors and the rounding of this step.</param>
    bool TryUpdateRounded(Tensor parameter, Tensor gradient, in RuleContext context, IWeightUpdateKernel kernel, in WeightUpdateScalars weights);
}
