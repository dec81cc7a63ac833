namespace LowRankOptim;

/// <summary>Validation helpers shared by the rule configs.</summary>
internal static class RuleChecks
{
    public static void UnitInterval(string name, double value, string where)
    {
        if (!(value >= 0 && value < 1))
            throw new ArgumentOutOfRangeException(name, value, $"{where}: {name} must be in [0, 1).");
    }

    /// <summary>Throws when <paramref name="value"/> is not a named member of its enum, listing the allowed ones.</summary>
    public static void Defined<T>(string name, T value, string where) where T : struct, Enum
    {
        if (!Enum.IsDefined(value))
            throw new ArgumentOutOfRangeException(name, value, $"{where}: {name} must be one of {string.Join(", ", Enum.GetNames<T>())}.");
    }

    /// <summary>The group's current config as the type the rule was created by.</summary>
    public static T ConfigAs<T>(IUpdateRuleConfig config) where T : IUpdateRuleConfig =>
        config is T typed ? typed : throw new InvalidOperationException(
            $"The parameter's state was created by {typeof(T).Name} but the group's rule is now {config.GetType().Name}; " +
            "a rule's kind cannot change after the optimizer is built.");
}
