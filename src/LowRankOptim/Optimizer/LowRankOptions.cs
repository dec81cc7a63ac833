using TorchSharp.Modules;

namespace LowRankOptim;

/// <summary>
/// The options of one parameter group. Unset (null) values are filled from the optimizer's defaults when
/// the group is added. Schedulers change <see cref="OptimizerOptions.LearningRate"/>; everything here is
/// saved with the optimizer state.
/// <para>
/// Once the group belongs to an optimizer, its <b>structural</b> options are fixed, because the parameters' state
/// was built for them: the projection (its kind and every one of its values), the rule's kind and its structural
/// values (see each rule config's schema: e.g. Adam's correct_bias and eps_mode, whether Adafactor's or SMMF's
/// beta is set, whether SGD's momentum is 0), and <see cref="DecayOrder"/>. The next <c>step</c> or save after one
/// was set to another value throws <see cref="InvalidOperationException"/> naming the group, the option and both
/// values (so no checkpoint is written that the optimizer's own state does not match). <b>Hyperparameters</b> may
/// change at any time: the learning rate, <see cref="WeightDecay"/> and the rule's hyperparameters (betas, eps, decay
/// rates); they are checked at the next step with the messages of construction, and a load restores them from the
/// checkpoint.
/// </para>
/// </summary>
public sealed class LowRankOptions : OptimizerOptions
{
    private const int FormatVersion = 5;
    private WeightDecayOrder? _decayOrder;
    private IProjectionConfig? _projection;
    private IUpdateRuleConfig? _rule;
    private Structure? _built;                           // the structure the group's states were built for
    private (object? Projection, object? Rule) _checked; // the configs the last validation saw

    /// <summary>λ ≥ 0, decoupled weight decay (a hyperparameter).</summary>
    public double? WeightDecay { get; set; }

    /// <summary>Whether the decay is applied before or after the update (structural).</summary>
    public WeightDecayOrder? DecayOrder
    {
        get => _decayOrder;
        set => _decayOrder = value;
    }

    /// <summary>The projection; <see cref="FullSpace.Instance"/> trains the group in the full space (structural).</summary>
    public IProjectionConfig? Projection
    {
        get => _projection;
        set => _projection = value;
    }

    /// <summary>
    /// How the group's moments are stored (structural): dense by default, or bfloat16, block-wise 8-bit or 4-bit
    /// (<see cref="LowRankOptim.MomentStorage"/>). A rule without a moment to compress (SMMF, Adafactor without beta1,
    /// SGD without momentum) is refused with a compressed format.
    /// </summary>
    public MomentStorage? MomentStorage { get; set; }

    /// <summary>The storage in force: <see cref="MomentStorage"/>, or dense while it is unset.</summary>
    internal MomentStorage EffectiveMomentStorage => MomentStorage ?? LowRankOptim.MomentStorage.Dense;

    /// <summary>
    /// How the step's result is rounded into the group's bfloat16 parameters (structural): to nearest by default, or
    /// stochastically with a seed (<see cref="LowRankOptim.WeightRounding"/>), so that updates below half a bf16 ulp of the
    /// weights are not lost. float32 and float64 parameters are not affected; a stochastic group must hold a bfloat16
    /// parameter and no float16 one.
    /// </summary>
    public WeightRounding? WeightRounding { get; set; }

    /// <summary>The weight rounding in force: <see cref="WeightRounding"/>, or nearest while it is unset.</summary>
    internal WeightRounding EffectiveWeightRounding => WeightRounding ?? LowRankOptim.WeightRounding.Nearest;

    /// <summary>The update rule (Adam, Adafactor, …): its kind and structural values are fixed once the group belongs to an optimizer.</summary>
    public IUpdateRuleConfig? Rule
    {
        get => _rule;
        set => _rule = value;
    }

    /// <summary>The optimizer this group belongs to, which stages loads until they are complete.</summary>
    internal LowRankOptimizer? Owner { get; private set; }

    /// <summary>The group's index in its optimizer.</summary>
    internal int GroupIndex { get; private set; }

    internal double Lr => LearningRate ?? throw new InvalidOperationException("the group has no learning rate");

    private string Where => $"parameter group {GroupIndex}";

    private const string FixedStructure =
        "Structural options are fixed once the optimizer is built, because the parameters' state was created for them " +
        "(see docs/getting-started.md, section Checkpoints); build a new optimizer to change them. " +
        "Hyperparameters (lr, weight_decay, betas, eps, decay rates) may change at any time.";

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
        MomentStorage ??= defaults.EffectiveMomentStorage;
        WeightRounding ??= defaults.EffectiveWeightRounding;
        InitialLearningRate = LearningRate ?? 0;
    }

    /// <summary>Makes these (validated) options those of group <paramref name="index"/> of <paramref name="owner"/>: their structure is fixed from now on.</summary>
    internal void Seal(LowRankOptimizer owner, int index)
    {
        (Owner, GroupIndex) = (owner, index);
        _built = new Structure(_projection!, _rule!, _decayOrder!.Value, EffectiveMomentStorage, EffectiveWeightRounding);
        _checked = (_projection, _rule);
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
        ValidateScalars(where);
        if (DecayOrder is not WeightDecayOrder order || !Enum.IsDefined(order))
            throw new ArgumentOutOfRangeException(nameof(DecayOrder), DecayOrder, $"{where}: must be one of {string.Join(", ", Enum.GetNames<WeightDecayOrder>())}.");
        if (Projection is null) throw new ArgumentNullException(nameof(Projection), $"{where}: a projection is required (FullSpace.Instance for none).");
        if (Rule is null) throw new ArgumentNullException(nameof(Rule), $"{where}: an update rule is required.");
        // Refused here, not at the first checkpoint: a config is saved as its registered kind.
        ConfigRegistry.EnsureRegistered(Projection, where, nameof(Projection));
        ConfigRegistry.EnsureRegistered(Rule, where, nameof(Rule));
        Projection.Validate(where);
        Rule.Validate(where);
        ValidateMomentStorage(where);
        EffectiveWeightRounding.Validate(where);
        if (Projection is GaLorePlusProjection { ResidualDensity: > 0 } plus && Rule is not AdamConfig)
            throw new ArgumentException($"{where}: residual_density = {plus.ResidualDensity} needs the Adam rule (the sparse residual's moments follow its betas, eps and bias correction); the group's rule is {Rule.GetType().Name}.", "residual_density");
        ValidateLearningRateAndRule(where);
    }

    /// <summary>The storage must be valid, and a compressed one needs a rule that declares a moment (else it would be ignored).</summary>
    private void ValidateMomentStorage(string where)
    {
        var storage = EffectiveMomentStorage;
        storage.Validate(where);
        if (storage.Format == MomentFormat.Dense || DeclaresMoment(Rule!.DeclareState([64, 64], TorchSharp.torch.ScalarType.Float32))) return;
        throw new ArgumentException(
            $"{where}: moment storage {storage} needs a rule with moments to store, but the rule {Rule!.GetType().Name} keeps none " +
            "(SMMF's factored moments, Adafactor without beta1, SGD without momentum); use MomentFormat.Dense (optim_bits 32) for this group.", "optim_bits");

        static bool DeclaresMoment(StateDeclaration d) => d.Entries.Any(e => e switch
        {
            // An unused slot (Adafactor's first moment without beta1, SGD's buffer without momentum) stores nothing to compress.
            TensorEntry t => t.Moment != MomentKind.None && t.Presence != SlotPresence.Unused,
            ComponentEntry c => DeclaresMoment(c.Declaration),
            _ => false,
        });
    }

    /// <summary>
    /// The check before each step of an optimizer's group: the learning rate and weight decay (which schedulers and
    /// users set directly), and every config again when one was replaced since the last check; the messages are
    /// those of construction.
    /// </summary>
    /// <exception cref="ArgumentException">A value is invalid.</exception>
    /// <exception cref="InvalidOperationException">A structural option was changed since the optimizer was built.</exception>
    internal void CheckBeforeStep()
    {
        if (ReferenceEquals(_projection, _checked.Projection) && ReferenceEquals(_rule, _checked.Rule) && _decayOrder == _built?.DecayOrder && MomentStorage == _built?.MomentStorage &&
            WeightRounding == _built?.WeightRounding)
        {
            ValidateScalars(Where);
            ValidateLearningRateAndRule(Where);
            return;
        }
        EnsureBuiltStructure();
        Validate(Where);
        _checked = (_projection, _rule);
    }

    /// <summary>
    /// Throws <see cref="InvalidOperationException"/> naming the option and both values when a structural option
    /// differs from the one the group's states were built for (see the class remarks); nothing when the group belongs
    /// to no optimizer.
    /// </summary>
    internal void EnsureBuiltStructure()
    {
        if (_built is not { } built) return;
        if (_decayOrder != built.DecayOrder)
            throw new InvalidOperationException(
                $"{Where}: decay_order cannot switch from {built.DecayOrder} to {_decayOrder?.ToString() ?? "null"} after the optimizer is built. {FixedStructure}");
        if (MomentStorage != built.MomentStorage)
            throw new InvalidOperationException(
                $"{Where}: moment_storage cannot switch from {built.MomentStorage} to {MomentStorage?.ToString() ?? "null"} after the optimizer is built. {FixedStructure}");
        if (WeightRounding != built.WeightRounding)
            throw new InvalidOperationException(
                $"{Where}: weight_rounding cannot switch from {built.WeightRounding} to {WeightRounding?.ToString() ?? "null"} after the optimizer is built. {FixedStructure}");
        EnsureSameStructure("projection", nameof(Projection), built.Projection, _projection);
        EnsureSameStructure("rule", nameof(Rule), built.Rule, _rule);
    }

    private void ValidateScalars(string where)
    {
        if (LearningRate is not double lr || !(lr >= 0) || double.IsInfinity(lr))
            throw new ArgumentOutOfRangeException("lr", LearningRate, $"{where}: lr must be finite and >= 0.");
        if (WeightDecay is not double wd || !(wd >= 0) || double.IsInfinity(wd))
            throw new ArgumentOutOfRangeException("weight_decay", WeightDecay, $"{where}: weight_decay must be finite and >= 0.");
    }

    private void ValidateLearningRateAndRule(string where)
    {
        if (Rule is AdafactorConfig { RelativeStep: true } && LearningRate is double lr && lr != 0)
            throw new ArgumentException($"{where}: lr = {lr} cannot be combined with relative_step = true (the step size is then min(1e-2, 1/√k)); leave lr unset.", "lr");
    }

    /// <summary>
    /// Refuses a config whose structure differs from <paramref name="built"/>, the one the group's states were created
    /// for (a structural option, see the class remarks); execution policy and hyperparameters may differ.
    /// </summary>
    private void EnsureSameStructure(string role, string property, object built, object? value)
    {
        if (value is null)
            throw new InvalidOperationException($"{Where}: the {role} cannot be set to null after the optimizer is built. {FixedStructure}");
        ConfigRegistry.EnsureRegistered(value, Where, property);
        if (ConfigRegistry.Difference(built, value) is { } d)
            throw new InvalidOperationException(d.Option == "kind"
                ? $"{Where}: the {role} cannot switch from {d.Saved} to {d.Current} after the optimizer is built. {FixedStructure}"
                : $"{Where}: the {role} option {d.Option} cannot switch from {d.Saved} to {d.Current} after the optimizer is built{Because(d)}. {FixedStructure}");
    }

    /// <summary>
    /// The first structural difference between saved options and these (current) ones, as a message naming the group,
    /// the option and both values; null when a load may replace these options by the saved ones.
    /// </summary>
    internal string? StructuralMismatch(LowRankOptions saved, int groupIndex)
    {
        var where = $"parameter group {groupIndex}";
        // Compared with what the states were built for (a structural option set since is undone by the load).
        var (decayOrder, projection, rule, storage, rounding) = _built is { } built
            ? (built.DecayOrder, built.Projection, built.Rule, built.MomentStorage, built.WeightRounding)
            : (DecayOrder, Projection, Rule, EffectiveMomentStorage, EffectiveWeightRounding);
        const string Rule_ =
            "A checkpoint loads only into an optimizer built with the same method configuration: the projection and rule " +
            "kinds and their structural options (see docs/getting-started.md, section Checkpoints). Hyperparameters (lr, " +
            "weight_decay, betas, eps, decay rates) need not match: the load restores the saved ones.";
        if (saved.DecayOrder != decayOrder)
            return $"{where}: the checkpoint was saved with decay_order = {saved.DecayOrder}, but this optimizer's group has decay_order = {decayOrder}. {Rule_}";
        if (saved.MomentStorage != storage && saved.MomentStorage! with { BlockSize = 0 } == storage with { BlockSize = 0 })
            return $"{where}: the checkpoint's {saved.MomentStorage!.Format} moments are stored in blocks of {saved.MomentStorage.EffectiveBlockSize} entries, " +
                $"but this optimizer's group stores them in blocks of {storage.EffectiveBlockSize} (block_size). " +
                "Moments are not converted between storages on load (requantizing would silently lose precision); " +
                $"build the optimizer with block_size = {saved.MomentStorage.EffectiveBlockSize} (MomentStorage = {saved.MomentStorage}) to load it. {Rule_}";
        if (saved.MomentStorage != storage)
            return $"{where}: the checkpoint's moments are stored as {saved.MomentStorage}, but this optimizer's group stores them as {storage}. " +
                "Moments are not converted between storages on load (the values would silently lose precision or the file's meaning); " +
                $"build the optimizer with MomentStorage = {saved.MomentStorage} to load it. {Rule_}";
        if (saved.WeightRounding != rounding)
            return $"{where}: the checkpoint was saved with weight_rounding = {saved.WeightRounding}, but this optimizer's group has weight_rounding = {rounding}. " +
                "A resumed run rounds its bfloat16 weights as the saved run did, or it would not continue it; " +
                $"build the optimizer with WeightRounding = {saved.WeightRounding} to load it. {Rule_}";
        foreach (var (role, a, b) in new[] { ("projection", (object)saved.Projection!, (object)projection!), ("rule", saved.Rule!, rule!) })
        {
            if (ConfigRegistry.Difference(a, b) is not { } d) continue;
            return d.Option == "kind"
                ? $"{where}: the checkpoint was saved with the {role} {d.Saved}, but this optimizer's group has the {role} {d.Current}. {Rule_}"
                : $"{where}: the checkpoint was saved with {role} option '{d.Option}' = {d.Saved}, but this optimizer's group has '{d.Option}' = {d.Current}{Because(d)}. {Rule_}";
        }
        return null;
    }

    private static string Because(ConfigDifference d) => d.Meaning is null ? "" : $" ({d.Meaning})";

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">A structural option was changed since the optimizer was built: the
    /// file would not match the parameters' state, so nothing is written for this group.</exception>
    public override void SaveStateDict(BinaryWriter writer)
    {
        EnsureBuiltStructure();
        base.SaveStateDict(writer);
        var w = new StateWriter(writer, checksums: true);
        w.Long("options_version", FormatVersion);
        // TorchSharp's two doubles above carry no checksum: the same values again, as checked entries.
        w.Double("initial_lr", InitialLearningRate);
        w.Double("lr", LearningRate!.Value);
        w.Double("weight_decay", WeightDecay!.Value);
        w.Long("decay_order", (long)DecayOrder!.Value);
        ConfigCodec.Write(w, Projection!);
        ConfigCodec.Write(w, Rule!);
        var storage = EffectiveMomentStorage;
        w.Long("moment_format", (long)storage.Format);
        w.Long("moment_rounding", (long)storage.Rounding);
        w.Long("moment_seed", storage.Seed);
        w.Long("moment_min_elements", storage.MinElements);
        // Format 5: the block size in force (not 0), so that the file does not depend on a default.
        w.Long("moment_block_size", storage.EffectiveBlockSize);
        var rounding = EffectiveWeightRounding;
        w.Long("weight_rounding", (long)rounding.Mode);
        w.Long("weight_rounding_seed", rounding.Seed);
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

    /// <summary>Copies the values of another group's options (both must be <see cref="LowRankOptions"/> of the same structure).</summary>
    /// <exception cref="ArgumentException">The source is no <see cref="LowRankOptions"/>, or its structure differs from this group's.</exception>
    /// <param name="source">The options to copy.</param>
    public override void LoadStateDict(OptimizerOptions source)
    {
        if (source is not LowRankOptions other)
            throw new ArgumentException($"parameter group {GroupIndex}: cannot load options of type {source?.GetType().Name ?? "null"} into LowRankOptions.", nameof(source));
        var copy = new LowRankOptions();
        copy.CopyFrom(other);
        if (Projection is not null && Rule is not null) copy.KeepExecutionPolicyOf(this);
        if (_built is not null && StructuralMismatch(copy, GroupIndex) is { } mismatch) throw new ArgumentException(mismatch, nameof(source));
        CopyFrom(copy);
    }

    private void ReadValues(BinaryReader reader, string context)
    {
        try
        {
            base.LoadStateDict(reader);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{context}: the stream ended inside TorchSharp's learning rates, before entry 'options_version'.", e);
        }
        var r = new StateReader(reader, context);
        var version = r.FormatVersion("options_version", FormatVersion);
        if (version >= 2)
        {
            // TorchSharp's unchecked doubles must equal the checked copies.
            var (initial, lr) = (r.Double("initial_lr"), r.Double("lr"));
            if (BitConverter.DoubleToInt64Bits(initial) != BitConverter.DoubleToInt64Bits(InitialLearningRate))
                throw new InvalidDataException($"{context}: entry 'initial_lr' holds {initial:R}, but TorchSharp's copy before the entries holds {InitialLearningRate:R}: the file is corrupted.");
            if (LearningRate is not double raw || BitConverter.DoubleToInt64Bits(lr) != BitConverter.DoubleToInt64Bits(raw))
                throw new InvalidDataException($"{context}: entry 'lr' holds {lr:R}, but TorchSharp's copy before the entries holds {LearningRate:R}: the file is corrupted.");
        }
        if (!(InitialLearningRate >= 0) || double.IsInfinity(InitialLearningRate))
            throw new InvalidDataException($"{context}: entry 'initial_lr' holds {InitialLearningRate:R}; the initial learning rate (the base of LR schedulers) must be finite and >= 0.");
        WeightDecay = r.Double("weight_decay");
        DecayOrder = (WeightDecayOrder)r.Long("decay_order");
        Projection = ConfigCodec.ReadProjection(r);
        Rule = ConfigCodec.ReadRule(r);
        // Format 3 added the moment storage; earlier files hold dense moments.
        // Format 5 added the block size; earlier files used the format's default (256 for 8-bit, 128 for 4-bit).
        MomentStorage = version >= 3 ? ReadMomentStorage(r, context, version) : LowRankOptim.MomentStorage.Dense;
        // Format 4 added the weight rounding; earlier files rounded bfloat16 weights to nearest.
        WeightRounding = version >= 4 ? ReadWeightRounding(r, context) : LowRankOptim.WeightRounding.Nearest;
    }

    private static WeightRounding ReadWeightRounding(StateReader r, string context)
    {
        var rounding = new WeightRounding((Kernels.StateRounding)r.Long("weight_rounding"), r.Long("weight_rounding_seed"));
        try
        {
            rounding.Validate(context);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{context}: the saved weight rounding is invalid: {e.Message}", e);
        }
        return rounding;
    }

    private static MomentStorage ReadMomentStorage(StateReader r, string context, long version)
    {
        var format = (MomentFormat)r.Long("moment_format");
        var rounding = (Kernels.StateRounding)r.Long("moment_rounding");
        var (seed, minElements) = (r.Long("moment_seed"), r.Long("moment_min_elements"));
        var blockSize = version >= 5 ? r.Long("moment_block_size") : 0;
        if (blockSize is < int.MinValue or > int.MaxValue)
            throw new InvalidDataException($"{context}: entry 'moment_block_size' holds {blockSize}; a block size must be 0 or a positive multiple of {LowRankOptim.MomentStorage.BlockMultiple} up to {LowRankOptim.MomentStorage.MaxBlockSize}.");
        // The saved block size in force; the format's default is kept as 0 (the same storage: equality compares the block size in force).
        var storage = new MomentStorage(format, rounding, seed, minElements, blockSize == LowRankOptim.MomentStorage.DefaultBlockSize(format) ? 0 : (int)blockSize);
        try
        {
            storage.Validate(context);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{context}: the saved moment storage is invalid: {e.Message}", e);
        }
        return storage;
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
        MomentStorage = other.MomentStorage;
        WeightRounding = other.WeightRounding;
    }

    /// <summary>What a group's states were built for.</summary>
    private sealed record Structure(IProjectionConfig Projection, IUpdateRuleConfig Rule, WeightDecayOrder DecayOrder, MomentStorage MomentStorage,
        WeightRounding WeightRounding);
}
