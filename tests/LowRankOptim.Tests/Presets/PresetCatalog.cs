using System.Reflection;
using System.Runtime.ExceptionServices;
using LowRankOptim.Kernels;
using LowRankOptim.Tests.Support;
using TorchSharp.Modules;

namespace LowRankOptim.Tests.Presets;

/// <summary>
/// Every preset with knob settings that, together, give each of its knobs a value other than its default, and
/// reflection helpers that call a preset or a factory shape with such a setting by knob name.
/// </summary>
public static class PresetCatalog
{
    /// <summary>Knob settings by preset name, from the method catalog's rows; the settings of one preset together cover every knob.</summary>
    public static IReadOnlyList<(string Preset, string Case, Dictionary<string, object?> Knobs)> Settings { get; } =
        [.. MethodCatalog.All.SelectMany(m => m.Presets ?? []).Select(s => (s.Preset, s.Case, s.Knobs))];

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
