
namespace LowRankOptim;

/// <summary>Writes and reads projection and rule configs as a kind name followed by their values.</summary>
internal static class ConfigCodec
{
    public static void Write(StateWriter writer, IProjectionConfig config)
    {
        writer.String("projection", KindOf(config));
        config.Save(writer);
    }

    public static void Write(StateWriter writer, IUpdateRuleConfig config)
    {
        writer.String("rule", KindOf(config));
        config.Save(writer);
    }

    public static IProjectionConfig ReadProjection(StateReader reader)
    {
        var kind = reader.String("projection");
        return kind switch
        {
            nameof(FullSpace) => FullSpace.Instance,
            nameof(SvdProjection) => SvdProjection.Read(reader),
            nameof(RandomizedSvdProjection) => RandomizedSvdProjection.Read(reader),
            nameof(DctProjection) => DctProjection.Read(reader),
            nameof(OnlinePcaProjection) => OnlinePcaProjection.Read(reader),
            nameof(GaLorePlusProjection) => GaLorePlusProjection.Read(reader),
            _ => throw new InvalidDataException($"{reader.Context}: unknown projection kind '{kind}'."),
        };
    }

    public static IUpdateRuleConfig ReadRule(StateReader reader)
    {
        var kind = reader.String("rule");
        return kind switch
        {
            nameof(AdamConfig) => AdamConfig.Read(reader),
            nameof(AdafactorConfig) => AdafactorConfig.Read(reader),
            nameof(SgdConfig) => SgdConfig.Read(reader),
            nameof(SmmfConfig) => SmmfConfig.Read(reader),
            _ => throw new InvalidDataException($"{reader.Context}: unknown rule kind '{kind}'."),
        };
    }

    private static string KindOf(object config) => config switch
    {
        FullSpace or SvdProjection or RandomizedSvdProjection or DctProjection or OnlinePcaProjection or GaLorePlusProjection or AdamConfig or AdafactorConfig or SgdConfig or SmmfConfig => config.GetType().Name,
        _ => throw new NotSupportedException(
            $"{config.GetType().FullName} cannot be saved: only the library's own projection and rule configs are serializable."),
    };
}
