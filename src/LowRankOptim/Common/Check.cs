using System.Numerics;

namespace LowRankOptim;

/// <summary>
/// A constraint on one config value: what must hold, and how to say it ("in [0, 1)", "finite and &gt; 0", …).
/// A violation throws <see cref="ArgumentOutOfRangeException"/> with the message
/// "{where}: {name} must be {constraint}." and the option's name as its parameter name.
/// </summary>
/// <param name="Holds">True for an allowed value.</param>
/// <param name="Constraint">The allowed values in words, completing "must be …".</param>
internal sealed record Check<TValue>(Func<TValue, bool> Holds, string Constraint)
{
    /// <summary>The same check, whose message adds <paramref name="reason"/> in parentheses.</summary>
    public Check<TValue> Because(string reason) => this with { Constraint = $"{Constraint} ({reason})" };

    /// <summary>Throws when <paramref name="value"/> of the option <paramref name="name"/> breaks the constraint.</summary>
    public void Enforce(string name, TValue value, string where)
    {
        if (!Holds(value))
            throw new ArgumentOutOfRangeException(name, value, $"{where}: {name} must be {Constraint}.");
    }
}

/// <summary>The constraints the configs use (every comparison is false for NaN, so NaN is refused by all).</summary>
internal static class Check
{
    /// <summary>[0, 1): betas, momentum.</summary>
    public static Check<double> UnitInterval { get; } = new(v => v >= 0 && v < 1, "in [0, 1)");

    /// <summary>[0, 1].</summary>
    public static Check<double> ClosedUnitInterval { get; } = new(v => v >= 0 && v <= 1, "in [0, 1]");

    /// <summary>&gt; 0 (+∞ allowed).</summary>
    public static Check<double> Positive { get; } = new(v => v > 0, "> 0");

    /// <summary>&gt;= 0 (+∞ allowed).</summary>
    public static Check<double> NonNegative { get; } = new(v => v >= 0, ">= 0");

    /// <summary>&lt; 0 (−∞ allowed).</summary>
    public static Check<double> Negative { get; } = new(v => v < 0, "< 0");

    /// <summary>Finite and &gt; 0.</summary>
    public static Check<double> FinitePositive { get; } = new(v => v > 0 && !double.IsInfinity(v), "finite and > 0");

    /// <summary>Finite and &gt;= 0.</summary>
    public static Check<double> FiniteNonNegative { get; } = new(v => v >= 0 && !double.IsInfinity(v), "finite and >= 0");

    /// <summary>Finite and &lt;= 0.</summary>
    public static Check<double> FiniteNonPositive { get; } = new(v => v <= 0 && !double.IsInfinity(v), "finite and <= 0");

    /// <summary>&gt;= <paramref name="min"/>.</summary>
    public static Check<TNumber> AtLeast<TNumber>(TNumber min) where TNumber : INumber<TNumber> => new(v => v >= min, $">= {min}");

    /// <summary>A named member of <typeparamref name="TEnum"/>; the message lists them all.</summary>
    public static Check<TEnum> Defined<TEnum>() where TEnum : struct, Enum =>
        new(Enum.IsDefined, $"one of {string.Join(", ", Enum.GetNames<TEnum>())}");

    /// <summary>One of <paramref name="allowed"/>; the message lists them.</summary>
    public static Check<TEnum> OneOf<TEnum>(params TEnum[] allowed) where TEnum : struct, Enum =>
        new(allowed.Contains, $"one of {string.Join(", ", allowed)}");
}
