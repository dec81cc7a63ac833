using System.Reflection;

namespace LowRankOptim;

/// <summary>
/// The kinds of projection and rule configs that a checkpoint can hold. A group's configs are saved as their
/// kind name followed by what their <c>Save</c> writes, and loaded by the reader registered for that kind.
/// The library's own configs are registered under their type names ("AdamConfig", "SvdProjection", …).
/// Register your own <see cref="IProjectionConfig"/> or <see cref="IUpdateRuleConfig"/> type once, before building
/// an optimizer with it: <see cref="LowRankOptimizer.add_param_group"/> refuses a config whose type is not
/// registered, so that it fails there and not at the first checkpoint.
/// </summary>
/// <example>
/// A rule config of your own (here SGD with a momentum read from its own field; the math is the library's
/// <see cref="SgdConfig"/>): its <c>Save</c> writes its fields, the registered reader reads them back in order.
/// <code>
/// ConfigRegistry.Register(reader => new MomentumSgd(reader.Double("momentum")));
/// var options = LowRankPresets.AdamW(lr: 0.1); // every option set; then replace the rule
/// options.Rule = new MomentumSgd(0.9);
/// var opt = new LowRankOptimizer([new LowRankParamGroup(model.parameters())], options);
///
/// public sealed record MomentumSgd(double Momentum) : IUpdateRuleConfig
/// {
///     private SgdConfig Sgd => new(Momentum);
///     public ScalarType WorkingType(ScalarType gradientType) => Sgd.WorkingType(gradientType);
///     public IUpdateRule Create(long[] shape, ScalarType dtype, Device device) => Sgd.Create(shape, dtype, device);
///     public StateDeclaration DeclareState(long[] shape, ScalarType dtype) => Sgd.DeclareState(shape, dtype);
///     public void Validate(string where) => Sgd.Validate(where);
///     public void Save(StateWriter writer) => writer.Double("momentum", Momentum);
/// }
/// </code>
/// </example>
public static class ConfigRegistry
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, Registration> ByKind = new(StringComparer.Ordinal);
    private static readonly Dictionary<Type, string> KindByType = [];

    /// <summary>
    /// Every library config declares its saved fields as a static <c>Schema</c> (a <see cref="ConfigSchema{T}"/>) in
    /// its method's folder; each registers itself here under its type name, so a new method adds no line to this file.
    /// </summary>
    static ConfigRegistry()
    {
        foreach (var type in typeof(ConfigRegistry).Assembly.GetTypes())
            if (type.GetField("Schema", BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)?.GetValue(null) is IConfigSchema schema)
                Add(type, type.Name, schema.Read, builtin: true, schema);
    }

    /// <summary>
    /// Registers the config type <typeparamref name="T"/> under <paramref name="kind"/>, the name written before its
    /// values in checkpoints; <paramref name="read"/> reads back what <typeparamref name="T"/>'s <c>Save</c> writes,
    /// in the same order. Registering a type again under the same kind replaces its reader.
    /// </summary>
    /// <typeparam name="T">A concrete type implementing <see cref="IProjectionConfig"/> and/or <see cref="IUpdateRuleConfig"/>.
    /// Configs are looked up by their exact runtime type.</typeparam>
    /// <param name="kind">The kind name (keep it stable: files are read by it).</param>
    /// <param name="read">Reads one config from the entries its <c>Save</c> wrote.</param>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is no concrete config type, the kind is empty or
    /// belongs to another type, the type is registered under another kind, or it is one of the library's own.</exception>
    public static void Register<T>(string kind, Func<StateReader, T> read) where T : class
    {
        ArgumentNullException.ThrowIfNull(read);
        Add(typeof(T), kind, reader => read(reader), builtin: false, schema: null);
    }

    /// <summary>Registers <typeparamref name="T"/> under its type name (as the library's own configs are).</summary>
    /// <param name="read">Reads one config from the entries its <c>Save</c> wrote.</param>
    public static void Register<T>(Func<StateReader, T> read) where T : class => Register(typeof(T).Name, read);

    /// <summary>True when configs of exactly <paramref name="configType"/> can be saved and loaded.</summary>
    /// <param name="configType">A config type.</param>
    public static bool IsRegistered(Type configType)
    {
        ArgumentNullException.ThrowIfNull(configType);
        lock (Gate) return KindByType.ContainsKey(configType);
    }

    /// <summary>The kind of <paramref name="config"/>; throws when its type is not registered.</summary>
    internal static string KindOf(object config)
    {
        lock (Gate)
        {
            if (KindByType.TryGetValue(config.GetType(), out var kind)) return kind;
        }
        throw new InvalidOperationException($"{config.GetType().FullName} cannot be saved: {HowToRegister(config.GetType())}");
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> (parameter <paramref name="option"/>) naming <paramref name="where"/>,
    /// the config's type and how to register it, when the type of <paramref name="config"/> is not registered.
    /// </summary>
    internal static void EnsureRegistered(object config, string where, string option)
    {
        var type = config.GetType();
        if (IsRegistered(type)) return;
        throw new ArgumentException(
            $"{where}: the {RoleOf(type)} config {type.FullName} is not registered, so its state could not be saved in a checkpoint. {HowToRegister(type)}",
            option);
    }

    /// <summary>
    /// Reads the config of <paramref name="kind"/> (whose kind entry was just read from <paramref name="entry"/>),
    /// which must be a <typeparamref name="TConfig"/>.
    /// </summary>
    internal static TConfig Read<TConfig>(string kind, string entry, StateReader reader, bool intact = true) where TConfig : class
    {
        var corrupted = intact ? "" : $" (The entry also fails its checksum: the file is corrupted.)";
        Registration registration;
        lock (Gate)
        {
            if (!ByKind.TryGetValue(kind, out registration!))
                throw new InvalidDataException(
                    $"{reader.Context}: unknown {entry} kind '{kind}' in entry '{entry}': no config of that kind is registered " +
                    $"(registered {entry} kinds: {string.Join(", ", KindsOf<TConfig>())}). A custom config type must be registered with " +
                    "ConfigRegistry.Register before the state is loaded." + corrupted);
        }
        if (!typeof(TConfig).IsAssignableFrom(registration.Type))
            throw new InvalidDataException(
                $"{reader.Context}: entry '{entry}' names kind '{kind}', a {RoleOf(registration.Type)} config ({registration.Type.FullName}), not a {entry} config." + corrupted);
        if (!intact) throw new InvalidDataException(reader.ChecksumFailure(entry));
        return registration.Read(reader) as TConfig ?? throw new InvalidDataException(
            $"{reader.Context}: the reader registered for kind '{kind}' returned no {typeof(TConfig).Name}.");
    }

    /// <summary>
    /// The first structural difference between <paramref name="saved"/> and <paramref name="current"/> (see
    /// <see cref="ConfigSchema{T}"/>): their kinds, then the structural fields of the library's configs (every field
    /// when <paramref name="everyField"/>). A custom config registered with <see cref="Register{T}(string, Func{StateReader, T})"/>
    /// has no declared structure: its kind is compared (and every value when <paramref name="everyField"/>); its
    /// components' own state entries (constants such as a rank) are checked when the state is read.
    /// </summary>
    internal static ConfigDifference? Difference(object saved, object current, bool everyField = false)
    {
        var (savedKind, currentKind) = (KindOf(saved), KindOf(current));
        if (savedKind != currentKind) return new ConfigDifference("kind", savedKind, currentKind);
        Registration registration;
        lock (Gate) registration = ByKind[currentKind];
        if (registration.Schema is { } schema) return schema.FirstDifference(saved, current, everyField);
        return everyField && !saved.Equals(current) ? new ConfigDifference("value", saved.ToString() ?? "", current.ToString() ?? "") : null;
    }

    private static void Add(Type type, string kind, Func<StateReader, object> read, bool builtin, IConfigSchema? schema)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        if (!typeof(IProjectionConfig).IsAssignableFrom(type) && !typeof(IUpdateRuleConfig).IsAssignableFrom(type))
            throw new ArgumentException($"{type.FullName} is neither an {nameof(IProjectionConfig)} nor an {nameof(IUpdateRuleConfig)}.", nameof(read));
        if (type.IsAbstract || type.IsInterface)
            throw new ArgumentException($"{type.FullName} is abstract: register the concrete config type (configs are looked up by their exact type).", nameof(read));
        lock (Gate)
        {
            if (ByKind.TryGetValue(kind, out var existing) && existing.Type != type)
                throw new ArgumentException($"kind '{kind}' is already registered for {existing.Type.FullName}; choose another kind for {type.FullName}.", nameof(kind));
            if (existing is { Builtin: true })
                throw new ArgumentException($"{type.FullName} is one of the library's own configs; it is registered already.", nameof(kind));
            if (KindByType.TryGetValue(type, out var other) && other != kind)
                throw new ArgumentException($"{type.FullName} is already registered under kind '{other}'; a type has one kind.", nameof(kind));
            ByKind[kind] = new Registration(type, read, builtin, schema);
            KindByType[type] = kind;
        }
    }

    private static IEnumerable<string> KindsOf<TConfig>() =>
        ByKind.Where(r => typeof(TConfig).IsAssignableFrom(r.Value.Type)).Select(r => r.Key).Order(StringComparer.Ordinal);

    private static string RoleOf(Type type) => typeof(IProjectionConfig).IsAssignableFrom(type) ? "projection" : "rule";

    private static string HowToRegister(Type type) =>
        $"Register its kind once before building the optimizer: ConfigRegistry.Register<{type.Name}>(\"{type.Name}\", reader => " +
        $"/* a {type.Name} read from the entries its Save writes, in the same order */).";

    private sealed record Registration(Type Type, Func<StateReader, object> Read, bool Builtin, IConfigSchema? Schema);
}
