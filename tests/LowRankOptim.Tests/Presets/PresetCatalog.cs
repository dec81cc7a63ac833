using System.Reflection;
using System.Runtime.ExceptionServices;
using LowRankOptim.Kernels;
using TorchSharp.Modules;

namespace LowRankOptim.Tests.Presets;

/// <summary>
/// Every preset with knob settings that, together, give each of its knobs a value other than its default, and
/// reflection helpers that call a preset or a factory shape with such a setting by knob name.
/// </summary>
public static class PresetCatalog
{
    /// <summary>Knob settings by preset name; the settings of one preset together cover every knob.</summary>
    public static IReadOnlyList<(string Preset, string Case, Dictionary<string, object?> Knobs)> Settings { get; } =
    [
        ("GaLore", "exact SVD", new()
        {
            ["lr"] = 0.02, ["beta1"] = 0.8, ["beta2"] = 0.95, ["eps"] = 1e-7, ["weight_decay"] = 0.1, ["rank"] = 7, ["update_proj_gap"] = 11,
            ["scale"] = 0.5, ["proj_type"] = ProjectionType.Left, ["correct_bias"] = false, ["conventions"] = AdamConventions.TorchOptim,
        }),
        ("GaLore", "randomized", new()
        {
            ["rank"] = 5, ["projector"] = GaLoreProjector.RandomizedSvd, ["oversampling"] = 3, ["power_iterations"] = 1, ["seed"] = 5L,
        }),
        ("GaLoreAdafactor", "fixed lr", new()
        {
            ["lr"] = 0.03, ["eps1"] = 1e-20, ["eps2"] = 2e-3, ["clip_threshold"] = 2.0, ["decay_rate"] = -0.7, ["beta1"] = 0.85, ["weight_decay"] = 0.2,
            ["scale_parameter"] = false, ["relative_step"] = false, ["rank"] = 6, ["update_proj_gap"] = 13, ["scale"] = 0.75,
            ["proj_type"] = ProjectionType.Right, ["projector"] = GaLoreProjector.RandomizedSvd, ["oversampling"] = 4, ["power_iterations"] = 3, ["seed"] = 9L,
        }),
        ("GaLoreAdafactor", "warm-up", new() { ["warmup_init"] = true, ["rank"] = 3 }),
        ("DctAdamW", "every knob", new()
        {
            ["lr"] = 0.04, ["beta1"] = 0.7, ["beta2"] = 0.9, ["eps"] = 1e-6, ["weight_decay"] = 0.3, ["rank"] = 5, ["update_proj_gap"] = 3, ["scale"] = 0.5,
            ["proj_type"] = ProjectionType.ReverseStd, ["sim_type"] = DctTransformMethod.FastTransform, ["ell_norm"] = 2.0, ["max_shape"] = 1000L,
        }),
        ("OnlineSubspaceDescent", "every knob", new()
        {
            ["lr"] = 0.05, ["beta1"] = 0.6, ["beta2"] = 0.97, ["eps"] = 1e-5, ["weight_decay"] = 0.4, ["rank"] = 4, ["update_proj_gap"] = 17, ["scale"] = 2.0,
            ["proj_type"] = ProjectionType.Right, ["p_optimizer"] = new SgdConfig(0.5), ["p_weight_decay"] = 0.02, ["correct_bias"] = false,
            ["conventions"] = AdamConventions.TorchOptim,
        }),
        ("GaLorePlus", "every knob", new()
        {
            ["lr"] = 0.06, ["beta1"] = 0.5, ["beta2"] = 0.98, ["eps"] = 1e-4, ["weight_decay"] = 0.5, ["rank"] = 3, ["update_proj_gap"] = 19, ["scale"] = 1.5,
            ["oversampling"] = 5, ["power_iterations"] = 4, ["seed"] = 12L, ["cross_head"] = CrossHeadReading.PerHeadShortSide, ["residual_density"] = 0.05,
            ["residual_warmup"] = 7, ["residual_reestimate"] = true, ["residual_scale"] = 0.3, ["correct_bias"] = false, ["conventions"] = AdamConventions.TorchOptim,
        }),
        ("Smmf", "every knob", new()
        {
            ["lr"] = 0.07, ["beta"] = null, ["eps"] = 1e-6, ["weight_decay"] = 0.6, ["decay_rate"] = -0.8, ["growth_rate"] = 0.9, ["vector_reshape"] = false,
            ["weight_decay_mode"] = SmmfWeightDecayMode.Adam, ["kernel"] = KernelPreference.Reference,
        }),
        ("AdamW", "every knob", new()
        {
            ["lr"] = 0.08, ["beta1"] = 0.55, ["beta2"] = 0.96, ["eps"] = 1e-3, ["weight_decay"] = 0.7, ["conventions"] = AdamConventions.GaLoreReference,
        }),
    ];

    /// <summary>The public presets: every public static method of <see cref="LowRankPresets"/>.</summary>
    public static MethodInfo[] AllPresets { get; } = typeof(LowRankPresets).GetMethods(BindingFlags.Public | BindingFlags.Static);

    public static MethodInfo Preset(string name) => AllPresets.Single(m => m.Name == name);

    /// <summary>The first parameter of each of TorchSharp's three shapes.</summary>
    public static readonly Type GroupsShape = typeof(IEnumerable<LowRankParamGroup>);
    public static readonly Type ParametersShape = typeof(IEnumerable<Parameter>);
    public static readonly Type NamedShape = typeof(IEnumerable<(string name, Parameter parameter)>);
    public static readonly Type[] Shapes = [GroupsShape, ParametersShape, NamedShape];

    /// <summary>The public, non-obsolete factories named <paramref name="name"/>.</summary>
    public static MethodInfo[] Factories(string name) => typeof(LowRank).GetMethods(BindingFlags.Public | BindingFlags.Static)
        .Where(m => m.Name == name && m.ReturnType == typeof(LowRankOptimizer) && !m.IsDefined(typeof(ObsoleteAttribute))).ToArray();

    /// <summary>The factory of <paramref name="name"/> whose first parameter is <paramref name="shape"/>.</summary>
    public static MethodInfo Factory(string name, Type shape) => Factories(name).Single(m => m.GetParameters()[0].ParameterType == shape);

    /// <summary>How many leading parameters of a factory are not knobs (the model overload has model, heads_of, include).</summary>
    public static int Leading(MethodInfo factory) => factory.GetParameters()[0].ParameterType == typeof(TorchSharp.torch.nn.Module) ? 3 : 1;

    /// <summary>The knobs of a preset or factory: name, type, default.</summary>
    public static (string Name, Type Type, object? Default)[] Knobs(MethodInfo method) =>
        method.GetParameters().Skip(method.DeclaringType == typeof(LowRankPresets) ? 0 : Leading(method))
            .Select(p => (p.Name!, p.ParameterType, p.DefaultValue)).ToArray();

    /// <summary>Calls <paramref name="method"/> with <paramref name="leading"/> and the knobs by name (missing ones at their default).</summary>
    public static T Call<T>(MethodInfo method, IReadOnlyDictionary<string, object?> knobs, params object?[] leading)
    {
        var parameters = method.GetParameters();
        foreach (var name in knobs.Keys)
            if (!parameters.Skip(leading.Length).Any(p => p.Name == name)) throw new ArgumentException($"{method.Name} has no knob '{name}'.");
        var arguments = parameters.Select((p, i) => i < leading.Length ? leading[i] : knobs.TryGetValue(p.Name!, out var v) ? v : Type.Missing).ToArray();
        try
        {
            return (T)method.Invoke(null, BindingFlags.OptionalParamBinding, null, arguments, null)!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    /// <summary>An empty first argument of <paramref name="shape"/>.</summary>
    public static object Empty(Type shape) =>
        shape == GroupsShape ? Array.Empty<LowRankParamGroup>()
        : shape == ParametersShape ? Array.Empty<Parameter>()
        : shape == NamedShape ? Array.Empty<(string, Parameter)>()
        : throw new ArgumentOutOfRangeException(nameof(shape));
}
