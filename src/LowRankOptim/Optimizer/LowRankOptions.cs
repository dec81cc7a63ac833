using TorchSharp.Modules;

namespace LowRankOptim;

/// <summary>
/// The options of one parameter group. Unset (null) values are filled from the optimizer's defaults when
/// the group is added. Schedulers change <see cref="OptimizerOptions.LearningRate"/>; everything here is
/// saved with the optimizer state.
/// </summary>
public sealed class LowRankOptions : OptimizerOptions
{
    private const int FormatVersion = 1;

    /// <summary>λ ≥ 0, decoupled weight decay.</summary>
    public double? WeightDecay { get; set; }

    /// <summary>Whether the decay is applied before or after the update.</summary>
    public WeightDecayOrder? DecayOrder { get; set; }

    /// <summary>The projection; <see cref="FullSpace.Instance"/> trains the group in the full space.</summary>
    public IProjectionConfig? Projection { get; set; }

    /// <summary>The update rule (Adam, Adafactor, …).</summary>
    public IUpdateRuleConfig? Rule { get; set; }

    /// <summary>The optimizer this group belongs to, which stages loads until they are complete.</summary>
    internal LowRankOptimizer? Owner { get; set; }

    /// <summary>The group's index in its optimizer.</summary>
    internal int GroupIndex { get; set; }

    internal double Lr => LearningRate ?? throw new InvalidOperationException("the group has no learning rate");

    /// <summary>Fills every unset (null) value from <paramref name="defaults"/>, and sets the initial learning rate.</summary>
    /// <param name="defaults">The optimizer's defaults.</param>
    public void FillFrom(LowRankOptions defaults)
    {
        ArgumentNullException.ThrowIfNull(defaults);
        LearningRate ??= defaults.LearningRate;
        WeightDecay ??= defaults.WeightDecay;
        DecayOrder ??= defaults.DecayOrder;
        Projection ??= defaults.Projection;
        Rule ??= defaults.Rule;
        InitialLearningRate = LearningRate ?? 0;
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> for any invalid value, naming it and the group, and for a projection or
    /// rule config whose type is not registered with <see cref="ConfigRegistry"/> (it could not be saved).
    /// </summary>
    internal void Validate(string where)
    {
        // Unset is not invalid: name every unset option at once, and say where values come from.
        List<string> unset = [];
        if (LearningRate is null) unset.Add("lr");
        if (WeightDecay is null) unset.Add("weight_decay");
        if (DecayOrder is null) unset.Add("decay_order");
        if (Projection is null) unset.Add("projection");
        if (Rule is null) unset.Add("rule");
        if (unset.Count > 0)
            throw new ArgumentException(
                $"{where}: {string.Join(", ", unset)} {(unset.Count == 1 ? "is" : "are")} not set, neither on the group's options nor on the optimizer's defaults. " +
                "Start from a preset, which sets every option (e.g. new LowRankOptimizer(groups, LowRankPresets.AdamW(lr: 1e-3)), or LowRankPresets.GaLore(...) as a group's options), " +
                "or set them on LowRankOptions (Projection = FullSpace.Instance for no projection).", unset[0]);
        if (LearningRate is not double lr || !(lr >= 0) || double.IsInfinity(lr))
            throw new ArgumentOutOfRangeException("lr", LearningRate, $"{where}: lr must be finite and >= 0.");
        if (WeightDecay is not double wd || !(wd >= 0) || double.IsInfinity(wd))
            throw new ArgumentOutOfRangeException("weight_decay", WeightDecay, $"{where}: weight_decay must be finite and >= 0.");
        if (DecayOrder is not WeightDecayOrder order || !Enum.IsDefined(order))
            throw new ArgumentOutOfRangeException(nameof(DecayOrder), DecayOrder, $"{where}: must be one of {string.Join(", ", Enum.GetNames<WeightDecayOrder>())}.");
        if (Projection is null) throw new ArgumentNullException(nameof(Projection), $"{where}: a projection is required (FullSpace.Instance for none).");
        if (Rule is null) throw new ArgumentNullException(nameof(Rule), $"{where}: an update rule is required.");
        // Refused here, not at the first checkpoint: a config is saved as its registered kind.
        ConfigRegistry.EnsureRegistered(Projection, where, nameof(Projection));
        ConfigRegistry.EnsureRegistered(Rule, where, nameof(Rule));
        Projection.Validate(where);
        Rule.Validate(where);
        if (Projection is GaLorePlusProjection { ResidualDensity: > 0 } plus && Rule is not AdamConfig)
            throw new ArgumentException($"{where}: residual_density = {plus.ResidualDensity} needs the Adam rule (the sparse residual's moments follow its betas, eps and bias correction); the group's rule is {Rule.GetType().Name}.", "residual_density");
        if (Rule is AdafactorConfig { RelativeStep: true } && lr != 0)
            throw new ArgumentException($"{where}: lr = {lr} cannot be combined with relative_step = true (the step size is then min(1e-2, 1/√k)); leave lr unset.", "lr");
    }

    /// <inheritdoc />
    public override void SaveStateDict(BinaryWriter writer)
    {
        base.SaveStateDict(writer);
        var w = new StateWriter(writer);
        w.Long("options_version", FormatVersion);
        w.Double("weight_decay", WeightDecay!.Value);
        w.Long("decay_order", (long)DecayOrder!.Value);
        ConfigCodec.Write(w, Projection!);
        ConfigCodec.Write(w, Rule!);
    }

    /// <summary>
    /// Reads the saved options. When this group belongs to an optimizer, the values are staged and applied
    /// only after the whole state has been read and checked, so a failed load changes nothing.
    /// </summary>
    /// <param name="reader">The stream, positioned at this group's options.</param>
    public override void LoadStateDict(BinaryReader reader)
    {
        var staged = new LowRankOptions();
        staged.ReadValues(reader, $"parameter group {GroupIndex} options");
        if (Owner is null)
        {
            staged.KeepExecutionPolicyOf(this);
            CopyFrom(staged);
        }
        else Owner.StageOptions(GroupIndex, staged);
    }

    /// <summary>Copies the values of another group's options (both must be <see cref="LowRankOptions"/>).</summary>
    /// <param name="source">The options to copy.</param>
    public override void LoadStateDict(OptimizerOptions source)
    {
        if (source is not LowRankOptions other)
            throw new ArgumentException($"parameter group {GroupIndex}: cannot load options of type {source?.GetType().Name ?? "null"} into LowRankOptions.", nameof(source));
        var (projection, rule) = (Projection, Rule);
        CopyFrom(other);
        if (projection is not null) Projection = Projection?.WithExecutionPolicyOf(projection);
        if (rule is not null) Rule = Rule?.WithExecutionPolicyOf(rule);
    }

    private void ReadValues(BinaryReader reader, string context)
    {
        base.LoadStateDict(reader);
        var r = new StateReader(reader, context);
        r.ExpectLong("options_version", FormatVersion);
        WeightDecay = r.Double("weight_decay");
        DecayOrder = (WeightDecayOrder)r.Long("decay_order");
        Projection = ConfigCodec.ReadProjection(r);
        Rule = ConfigCodec.ReadRule(r);
    }

    /// <summary>Gives these (loaded) options the execution policy of <paramref name="current"/>: a load restores the math only.</summary>
    internal void KeepExecutionPolicyOf(LowRankOptions current)
    {
        if (current.Projection is not null) Projection = Projection?.WithExecutionPolicyOf(current.Projection);
        if (current.Rule is not null) Rule = Rule?.WithExecutionPolicyOf(current.Rule);
    }

    internal void CopyFrom(LowRankOptions other)
    {
        LearningRate = other.LearningRate;
        InitialLearningRate = other.InitialLearningRate;
        WeightDecay = other.WeightDecay;
        DecayOrder = other.DecayOrder;
        Projection = other.Projection;
        Rule = other.Rule;
    }
}
