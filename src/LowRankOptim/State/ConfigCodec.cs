namespace LowRankOptim;

/// <summary>
/// Writes and reads projection and rule configs as a kind name (entry "projection" or "rule") followed by their
/// values; kinds are those of <see cref="ConfigRegistry"/>.
/// </summary>
internal static class ConfigCodec
{
    private const string ProjectionEntry = "projection";
    private const string RuleEntry = "rule";

    public static void Write(StateWriter writer, IProjectionConfig config) => Write(writer, ProjectionEntry, config, config.Save);

    public static void Write(StateWriter writer, IUpdateRuleConfig config) => Write(writer, RuleEntry, config, config.Save);

    public static IProjectionConfig ReadProjection(StateReader reader) => Read<IProjectionConfig>(reader, ProjectionEntry);

    public static IUpdateRuleConfig ReadRule(StateReader reader) => Read<IUpdateRuleConfig>(reader, RuleEntry);

    /// <summary>
    /// The kind entry, then the config's values. An unknown or misplaced kind is reported before a failed checksum
    /// of the kind entry (it says more: a newer release, a missing registration); both end the load.
    /// </summary>
    private static TConfig Read<TConfig>(StateReader reader, string entry) where TConfig : class
    {
        var (kind, intact) = reader.StringUnverified(entry);
        return ConfigRegistry.Read<TConfig>(kind, entry, reader, intact);
    }

    private static void Write(StateWriter writer, string entry, object config, Action<StateWriter> save)
    {
        writer.String(entry, ConfigRegistry.KindOf(config));
        save(writer);
    }
}
