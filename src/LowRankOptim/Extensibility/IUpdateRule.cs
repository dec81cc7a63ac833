using TorchSharp;

namespace LowRankOptim;

/// <summary>
/// An immutable description of an update rule; lives in the param group's options (so schedulers can
/// change its hyper-parameters between steps) and creates one <see cref="IUpdateRule"/> per parameter.
/// </summary>
public interface IUpdateRuleConfig
{
    /// <summary>The dtype the rule computes and keeps its moments in, for a gradient of <paramref name="gradientType"/>.</summary>
    /// <param name="gradientType">The dtype of the parameter and its gradient.</param>
    torch.ScalarType WorkingType(torch.ScalarType gradientType);

    /// <summary>Creates the per-parameter rule state for gradients (full or projected) of <paramref name="shape"/>.</summary>
    /// <param name="shape">The shape of the rule's input: the projected gradient, or the parameter in the full space.</param>
    /// <param name="dtype">The working dtype (from <see cref="WorkingType"/>).</param>
    /// <param name="device">The parameter's device.</param>
    IUpdateRule Create(long[] shape, torch.ScalarType dtype, torch.Device device);

    /// <summary>
    /// The state <see cref="Create"/> allocates for <paramref name="shape"/> in <paramref name="dtype"/>: the rule
    /// builds its <see cref="StateSlots"/> from it and the planner reads it (no allocation).
    /// </summary>
    /// <param name="shape">The shape of the rule's input.</param>
    /// <param name="dtype">The working dtype.</param>
    StateDeclaration DeclareState(long[] shape, torch.ScalarType dtype);

    /// <summary>Throws <see cref="ArgumentException"/> naming the option, its value and the constraint.</summary>
    /// <param name="where">Where the config is used, e.g. "parameter group 1", for the message.</param>
    void Validate(string where);

    /// <summary>Writes the config's math values (its kind is written by the caller); never execution policy.</summary>
    /// <param name="writer">Where the entries go.</param>
    void Save(StateWriter writer);

    /// <summary>
    /// This config (as read from a checkpoint) with the execution policy (kernel choice) of
    /// <paramref name="current"/>, the config in use: a load restores the math, never the policy.
    /// </summary>
    /// <param name="current">The config in use, whose execution policy is kept.</param>
    IUpdateRuleConfig WithExecutionPolicyOf(IUpdateRuleConfig current) => this;
}

/// <summary>A rule config with Adam-style betas, which OneCycleLR can cycle through <c>IBetas</c>.</summary>
public interface IBetasRuleConfig : IUpdateRuleConfig
{
    /// <summary>β1 and β2.</summary>
    (double Beta1, double Beta2) Betas { get; }

    /// <summary>A copy with other betas.</summary>
    /// <param name="beta1">β1.</param>
    /// <param name="beta2">β2.</param>
    IUpdateRuleConfig WithBetas(double beta1, double beta2);
}

/// <summary>What a rule is told at each step. It never sees parameter values, only this.</summary>
/// <param name="Step">k, the 1-based step of this parameter.</param>
/// <param name="LearningRate">η, the group's current learning rate (after the scheduler).</param>
/// <param name="Config">The group's current rule config.</param>
/// <param name="ParameterRms">RMS of the parameter before the step, computed only when asked (Adafactor's scale_parameter).</param>
/// <param name="Decay">The group's weight decay (for a rule that updates the weights itself, see <see cref="IUpdateRule.TryUpdateInPlace"/>).</param>
public readonly record struct RuleContext(long Step, double LearningRate, IUpdateRuleConfig Config, Func<double> ParameterRms, WeightDecayPolicy Decay = default);

/// <summary>
/// A rule's result: the optimizer applies W ← W − <see cref="Coefficient"/> · Back(<see cref="Direction"/>),
/// and decoupled weight decay W ← W·(1 − <see cref="DecayLearningRate"/>·λ) before or after it.
/// </summary>
/// <param name="Direction">The direction, in the gradient's (projected) shape. May be a state tensor: read only.</param>
/// <param name="Coefficient">The scalar step size applied to the direction.</param>
/// <param name="DecayLearningRate">The learning rate that multiplies the weight decay.</param>
public readonly record struct RuleUpdate(torch.Tensor Direction, double Coefficient, double DecayLearningRate);

/// <summary>The per-parameter state of an update rule: owns the moments, maps a gradient to a direction.</summary>
public interface IUpdateRule : IStatefulComponent
{
    /// <summary>Updates the moments with <paramref name="gradient"/> and returns the step.</summary>
    /// <param name="gradient">R, the rule's input: the projected gradient (or the gradient in the full space).</param>
    /// <param name="context">The step's context: step, learning rate, config, decay.</param>
    RuleUpdate Compute(torch.Tensor gradient, in RuleContext context);

    /// <summary>
    /// The full-space fused path, asked before <see cref="Compute"/> for a parameter without projection: either
    /// updates the state with <paramref name="gradient"/> and the weights in place in one pass,
    /// W ← W·<see cref="WeightDecayPolicy.FactorBeforeUpdate"/>(η_d) − c·U, and returns true with η_d in
    /// <paramref name="decayLearningRate"/> (the engine applies a decay after the update); or changes nothing and
    /// returns false (the default), and the engine calls <see cref="Compute"/>. Both must give the same result
    /// up to float rounding.
    /// </summary>
    /// <param name="parameter">The parameter, updated in place on success.</param>
    /// <param name="gradient">Its gradient in the rule's working dtype (L2 decay already added, if any).</param>
    /// <param name="context">The step's context, as for <see cref="Compute"/>.</param>
    /// <param name="decayLearningRate">η_d, the learning rate that multiplies the weight decay.</param>
    bool TryUpdateInPlace(torch.Tensor parameter, torch.Tensor gradient, in RuleContext context, out double decayLearningRate)
    {
        decayLearningRate = 0;
        return false;
    }
}
