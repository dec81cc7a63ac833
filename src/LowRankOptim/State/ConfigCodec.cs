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

    public static IProjectionConfig ReadProjection(StateReader reader) =>
        ConfigRegistry.Read<IProjectionConfig>(reader.String(ProjectionEntry), ProjectionEntry, reader);

    public static IUpdateRuleConfig ReadRule(StateReader reader) =>
        ConfigRegistry.Read<IUpdateRuleConfig>(reader.String(RuleEntry), RuleEntry, reader);

    private static void Write(StateWriter writer, string entry, object config, Action<StateWriter> save)
    {
        writer.String(entry, ConfigRegistry.KindOf(config));
        save(writer);
    }
}
