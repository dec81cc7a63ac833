namespace LowRankOptim;

/// <summary>
/// The saved fields of a config record <typeparamref name="T"/>, declared once, in checkpoint order: each with its
/// entry name (the torch-style option name), getter, setter (a <c>with</c> expression) and constraint.
/// Everything else is derived from the list:
/// <list type="bullet">
/// <item><see cref="Save"/> writes the fields in order, each as a named, typed entry (enums as long);</item>
/// <item><see cref="Read"/> starts from the default instance and applies the setters in the same order;</item>
/// <item><see cref="Validate"/> checks each field and throws <see cref="ArgumentOutOfRangeException"/> naming the
/// option, its value, the constraint and where (see <see cref="Check{TValue}"/>).</item>
/// </list>
/// Checks that relate fields to each other stay as code next to the schema, in the config's <c>Validate</c>.
/// Execution policy (a kernel choice) is validated but never saved (<see cref="ExecutionPolicy"/>).
/// <para>
/// Every field is <b>structural</b> unless it is declared a <see cref="Hyperparameter"/>: a structural value
/// decides the state's layout or which algorithm runs, so it cannot change once the optimizer is built, and a
/// checkpoint loads only into an optimizer whose structural values equal the saved ones
/// (<see cref="FirstDifference"/>). A hyperparameter (a rule's betas, eps, decay rates) is read at every step, may
/// change after construction, and is restored by a load, as torch.optim restores a group's values. Projections
/// declare no hyperparameters: their subspaces are built from every one of their values.
/// </para>
/// </summary>
internal sealed class ConfigSchema<T> : IConfigSchema where T : class
{
    private readonly T _defaults;
    private readonly List<IField> _fields = [];

    /// <summary>A schema whose <see cref="Read"/> starts from <paramref name="defaults"/>.</summary>
    public ConfigSchema(T defaults) => _defaults = defaults;

    /// <summary>A double entry.</summary>
    public ConfigSchema<T> Double(string name, Func<T, double> get, Func<T, double, T> set, Check<double>? check = null, string? option = null) =>
        Add(new Field<double>(name, option, get, set, check, null, static (w, n, v) => w.Double(n, v), static (r, n) => r.Double(n)));

    /// <summary>An optional double entry; <paramref name="check"/> applies when the value is present.</summary>
    public ConfigSchema<T> OptionalDouble(string name, Func<T, double?> get, Func<T, double?, T> set, Check<double>? check = null, string? option = null) =>
        Add(new Field<double?>(name, option, get, set, check is null ? null : new(v => v is not double d || check.Holds(d), check.Constraint),
            null, static (w, n, v) => w.OptionalDouble(n, v), static (r, n) => r.OptionalDouble(n)));

    /// <summary>A boolean entry.</summary>
    public ConfigSchema<T> Bool(string name, Func<T, bool> get, Func<T, bool, T> set) =>
        Add(new Field<bool>(name, null, get, set, null, null, static (w, n, v) => w.Bool(n, v), static (r, n) => r.Bool(n)));

    /// <summary>A long entry.</summary>
    public ConfigSchema<T> Long(string name, Func<T, long> get, Func<T, long, T> set, Check<long>? check = null, string? option = null) =>
        Add(new Field<long>(name, option, get, set, check, null, static (w, n, v) => w.Long(n, v), static (r, n) => r.Long(n)));

    /// <summary>An int saved as a long entry; a saved value outside the int range is refused on reading.</summary>
    /// <param name="name">The entry name, which is also the option's name in messages unless <paramref name="option"/> is given.</param>
    /// <param name="get">The value of a config.</param>
    /// <param name="set">A config with another value.</param>
    /// <param name="check">The constraint, if any.</param>
    /// <param name="option">The option's name in messages and as ArgumentException.ParamName, when it is not the entry name.</param>
    /// <param name="when">Validate only the configs for which this holds (a field that belongs to an optional part).</param>
    public ConfigSchema<T> Int(string name, Func<T, int> get, Func<T, int, T> set, Check<int>? check = null, string? option = null, Func<T, bool>? when = null) =>
        Add(new Field<int>(name, option, get, set, check, when, static (w, n, v) => w.Long(n, v), ReadInt));

    /// <summary>An enum saved as a long entry, validated as <see cref="Check.Defined{TEnum}"/> unless <paramref name="check"/> narrows it.</summary>
    public ConfigSchema<T> Enum<TEnum>(string name, Func<T, TEnum> get, Func<T, TEnum, T> set, Check<TEnum>? check = null, string? option = null, Func<T, bool>? when = null)
        where TEnum : struct, Enum =>
        Add(new Field<TEnum>(name, option, get, set, check ?? Check.Defined<TEnum>(), when,
            static (w, n, v) => w.Long(n, Convert.ToInt64(v)), static (r, n) => (TEnum)System.Enum.ToObject(typeof(TEnum), r.Long(n))));

    /// <summary>
    /// A nested rule config, saved as its kind and values (<see cref="ConfigCodec"/>). Validation requires its kind to be
    /// registered and validates it with "{where}, {role}" as its place.
    /// </summary>
    /// <param name="option">The option's name, for messages (the entries are "rule" and the rule's own).</param>
    /// <param name="get">The nested config.</param>
    /// <param name="set">A config with another nested config.</param>
    /// <param name="role">What the nested config is for, e.g. "the basis optimizer".</param>
    public ConfigSchema<T> Rule(string option, Func<T, IUpdateRuleConfig> get, Func<T, IUpdateRuleConfig, T> set, string role) =>
        Add(new NestedRule(option, get, set, role));

    /// <summary>The fields of <paramref name="part"/>, in its order, for a config that is that config plus more.</summary>
    /// <param name="part">The schema of the part.</param>
    /// <param name="get">The part of a config.</param>
    /// <param name="set">A config with another part.</param>
    public ConfigSchema<T> Include<TPart>(ConfigSchema<TPart> part, Func<T, TPart> get, Func<T, TPart, T> set) where TPart : class =>
        Add(new Part<TPart>(part, get, set));

    /// <summary>
    /// An execution-policy value (a kernel choice): validated as a defined <typeparamref name="TEnum"/>, never saved;
    /// a read keeps the default's value. When <paramref name="savedByEarlierReleases"/>, a long entry
    /// <paramref name="option"/> at this place in the files of earlier releases is skipped on reading.
    /// </summary>
    public ConfigSchema<T> ExecutionPolicy<TEnum>(string option, Func<T, TEnum> get, bool savedByEarlierReleases = false) where TEnum : struct, Enum =>
        Add(new Policy<TEnum>(option, get, savedByEarlierReleases));

    /// <summary>
    /// Declares the field added last a hyperparameter (see the class remarks): it may change after the optimizer is
    /// built, and a load restores its saved value. With <paramref name="structuralPart"/>, that part of its value (whether
    /// an optional beta is set, whether a momentum is 0) stays structural; <paramref name="meaning"/> says what it decides.
    /// </summary>
    public ConfigSchema<T> Hyperparameter(Func<object?, object?>? structuralPart = null, string? meaning = null)
    {
        if (_fields.Count == 0 || _fields[^1] is not IValueField field)
            throw new InvalidOperationException("Hyperparameter() follows the declaration of a value field.");
        field.MakeHyperparameter(structuralPart, meaning);
        return this;
    }

    /// <summary>
    /// The first structural field whose value differs between <paramref name="saved"/> and <paramref name="current"/>
    /// (every field when <paramref name="everyField"/>), or null when they are structurally equal.
    /// </summary>
    public ConfigDifference? FirstDifference(T saved, T current, bool everyField = false)
    {
        foreach (var field in _fields)
            if (field.Difference(saved, current, everyField) is { } difference) return difference;
        return null;
    }

    ConfigDifference? IConfigSchema.FirstDifference(object saved, object current, bool everyField) => FirstDifference((T)saved, (T)current, everyField);

    /// <summary>The names of the hyperparameter fields, in order (for documentation and tests).</summary>
    public IReadOnlyList<string> Hyperparameters =>
        [.. _fields.SelectMany(f => f switch
        {
            IValueField { IsHyperparameter: true } v => [v.Name],
            IPart p => p.Hyperparameters,
            _ => (IEnumerable<string>)[],
        })];

    /// <summary>Throws <see cref="ArgumentException"/> for the first field that breaks its constraint.</summary>
    /// <param name="config">The config.</param>
    /// <param name="where">Where the config is used, e.g. "parameter group 1", for the message.</param>
    public void Validate(T config, string where)
    {
        foreach (var field in _fields) field.Validate(config, where);
    }

    /// <summary>Writes every field in order.</summary>
    public void Save(T config, StateWriter writer)
    {
        foreach (var field in _fields) field.Save(config, writer);
    }

    /// <summary>Reads the fields in order into the default instance.</summary>
    public T Read(StateReader reader) => ReadInto(_defaults, reader);

    object IConfigSchema.Read(StateReader reader) => Read(reader);

    private T ReadInto(T config, StateReader reader)
    {
        foreach (var field in _fields) config = field.Read(config, reader);
        return config;
    }

    private ConfigSchema<T> Add(IField field)
    {
        _fields.Add(field);
        return this;
    }

    private static int ReadInt(StateReader reader, string name)
    {
        var value = reader.Long(name);
        return value is >= int.MinValue and <= int.MaxValue
            ? (int)value
            : throw new InvalidDataException($"{reader.Context}: entry '{name}' holds {value}, outside the range of a 32-bit integer.");
    }

    private interface IField
    {
        void Validate(T config, string where);

        void Save(T config, StateWriter writer);

        T Read(T config, StateReader reader);

        ConfigDifference? Difference(T saved, T current, bool everyField);
    }

    private interface IValueField : IField
    {
        string Name { get; }

        bool IsHyperparameter { get; }

        void MakeHyperparameter(Func<object?, object?>? structuralPart, string? meaning);
    }

    private interface IPart
    {
        IReadOnlyList<string> Hyperparameters { get; }
    }

    private sealed class Field<TValue>(
        string name, string? option, Func<T, TValue> get, Func<T, TValue, T> set, Check<TValue>? check, Func<T, bool>? when,
        Action<StateWriter, string, TValue> write, Func<StateReader, string, TValue> read) : IValueField
    {
        private Func<object?, object?>? _structuralPart;
        private string? _meaning;

        public string Name => name;

        public bool IsHyperparameter { get; private set; }

        public void MakeHyperparameter(Func<object?, object?>? structuralPart, string? meaning) =>
            (IsHyperparameter, _structuralPart, _meaning) = (true, structuralPart, meaning);

        public void Validate(T config, string where)
        {
            if (check is not null && (when is null || when(config))) check.Enforce(option ?? name, get(config), where);
        }

        public void Save(T config, StateWriter writer) => write(writer, name, get(config));

        public T Read(T config, StateReader reader) => set(config, read(reader, name));

        public ConfigDifference? Difference(T saved, T current, bool everyField)
        {
            var (a, b) = (get(saved), get(current));
            if (!IsHyperparameter || everyField)
                return EqualityComparer<TValue>.Default.Equals(a, b) ? null : new ConfigDifference(name, ConfigDifference.Show(a), ConfigDifference.Show(b));
            if (_structuralPart is null || Equals(_structuralPart(a), _structuralPart(b))) return null;
            return new ConfigDifference(name, ConfigDifference.Show(a), ConfigDifference.Show(b), _meaning);
        }
    }

    private sealed class NestedRule(string option, Func<T, IUpdateRuleConfig> get, Func<T, IUpdateRuleConfig, T> set, string role) : IField
    {
        public void Validate(T config, string where)
        {
            var rule = get(config) ?? throw new ArgumentNullException(option, $"{where}: {role} needs a rule config ({option}).");
            ConfigRegistry.EnsureRegistered(rule, $"{where}, {role}", option);
            rule.Validate($"{where}, {role}");
        }

        public void Save(T config, StateWriter writer) => ConfigCodec.Write(writer, get(config));

        public T Read(T config, StateReader reader) => set(config, ConfigCodec.ReadRule(reader));

        /// <summary>A nested rule is part of its config's structure: every one of its fields is compared.</summary>
        public ConfigDifference? Difference(T saved, T current, bool everyField) =>
            ConfigRegistry.Difference(get(saved), get(current), everyField: true) is { } d ? d.Within(option) : null;
    }

    private sealed class Part<TPart>(ConfigSchema<TPart> part, Func<T, TPart> get, Func<T, TPart, T> set) : IField, IPart where TPart : class
    {
        public IReadOnlyList<string> Hyperparameters => part.Hyperparameters;

        public void Validate(T config, string where) => part.Validate(get(config), where);

        public void Save(T config, StateWriter writer) => part.Save(get(config), writer);

        public T Read(T config, StateReader reader) => set(config, part.ReadInto(get(config), reader));

        public ConfigDifference? Difference(T saved, T current, bool everyField) => part.FirstDifference(get(saved), get(current), everyField);
    }

    private sealed class Policy<TEnum>(string option, Func<T, TEnum> get, bool savedByEarlierReleases) : IField where TEnum : struct, Enum
    {
        public void Validate(T config, string where) => Check.Defined<TEnum>().Enforce(option, get(config), where);

        public void Save(T config, StateWriter writer) { }

        public T Read(T config, StateReader reader)
        {
            if (savedByEarlierReleases) reader.SkipLongIfNext(option);
            return config;
        }

        /// <summary>Execution policy is never compared: a load keeps the loading optimizer's.</summary>
        public ConfigDifference? Difference(T saved, T current, bool everyField) => null;
    }
}

/// <summary>
/// A structural option whose value differs between two configs (a saved one and the one in use): its name, both
/// values as text, and what the structural part decides when only that part matters (e.g. "whether a first moment is kept").
/// </summary>
/// <param name="Option">The option's entry name ("rank", "p_optimizer.beta1"), or "kind" when the configs are of different kinds.</param>
/// <param name="Saved">The saved (or built) value.</param>
/// <param name="Current">The current (or new) value.</param>
/// <param name="Meaning">What the structural part of a hyperparameter decides, if only that part differs.</param>
public sealed record ConfigDifference(string Option, string Saved, string Current, string? Meaning = null)
{
    /// <summary>This difference inside the nested option <paramref name="option"/>.</summary>
    internal ConfigDifference Within(string option) => this with { Option = Option == "kind" ? option : $"{option}.{Option}" };

    /// <summary>A value as the messages show it: invariant numbers (round-trip), enum names, "null".</summary>
    internal static string Show(object? value) => value switch
    {
        null => "null",
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}

/// <summary>A <see cref="ConfigSchema{T}"/> seen without its type: how <see cref="ConfigRegistry"/> finds the library's configs.</summary>
internal interface IConfigSchema
{
    /// <summary>Reads a config written by the schema's <c>Save</c>.</summary>
    object Read(StateReader reader);

    /// <summary>The first structural difference between two configs of the schema's type (see <see cref="ConfigSchema{T}.FirstDifference"/>).</summary>
    ConfigDifference? FirstDifference(object saved, object current, bool everyField);
}
