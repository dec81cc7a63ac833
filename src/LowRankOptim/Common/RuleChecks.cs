namespace LowRankOptim;

/// <summary>Validation helpers shared by the configs and rules (the configs declare theirs with <see cref="Check"/>).</summary>
internal static class RuleChecks
{
    /// <summary>Throws when <paramref name="value"/> is not in [0, 1) (see <see cref="Check.UnitInterval"/>).</summary>
    public static void UnitInterval(string name, double value, string where) => Check.UnitInterval.Enforce(name, value, where);

    /// <summary>Throws when <paramref name="value"/> is not a named member of its enum, listing the allowed ones.</summary>
    public static void Defined<T>(string name, T value, string where) where T : struct, Enum => Check.Defined<T>().Enforce(name, value, where);

    /// <summary>The group's current config as the type the rule was created by.</summary>
    public static T ConfigAs<T>(IUpdateRuleConfig config) where T : IUpdateRuleConfig =>
        config is T typed ? typed : throw new InvalidOperationException(
            $"The parameter's state was created by {typeof(T).Name} but the group's rule is now {config.GetType().Name}; " +
            "a rule's kind cannot change after the optimizer is built.");
}
