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
    }

    private sealed class Field<TValue>(
        string name, string? option, Func<T, TValue> get, Func<T, TValue, T> set, Check<TValue>? check, Func<T, bool>? when,
        Action<StateWriter, string, TValue> write, Func<StateReader, string, TValue> read) : IField
    {
        public void Validate(T config, string where)
        {
            if (check is not null && (when is null || when(config))) check.Enforce(option ?? name, get(config), where);
        }

        public void Save(T config, StateWriter writer) => write(writer, name, get(config));

        public T Read(T config, StateReader reader) => set(config, read(reader, name));
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
    }

    private sealed class Part<TPart>(ConfigSchema<TPart> part, Func<T, TPart> get, Func<T, TPart, T> set) : IField where TPart : class
    {
        public void Validate(T config, string where) => part.Validate(get(config), where);

        public void Save(T config, StateWriter writer) => part.Save(get(config), writer);

        public T Read(T config, StateReader reader) => set(config, part.ReadInto(get(config), reader));
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
    }
}

/// <summary>A <see cref="ConfigSchema{T}"/> seen without its type: how <see cref="ConfigRegistry"/> finds the library's configs.</summary>
internal interface IConfigSchema
{
    /// <summary>Reads a config written by the schema's <c>Save</c>.</summary>
    object Read(StateReader reader);
}
