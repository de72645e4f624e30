using System.Globalization;

namespace DualChunk.Core;

/// <summary>The kinds of stage of a forward pass, in pass order.</summary>
internal enum PassStageKind
{
    /// <summary>No stage (nothing located).</summary>
    None,

    /// <summary>input_projection (or the input itself when E == H).</summary>
    InputProjection,

    /// <summary>A block, <see cref="PassStage.Layer"/> 1..L.</summary>
    Block,

    /// <summary>final_norm and the readout.</summary>
    FinalNorm,
}

/// <summary>
/// A stage of a forward pass: what <see cref="ForwardPass.Run"/> returns when it locates where values first went
/// non-finite, named as the checkpoint names the stage's tensors (<see cref="CheckpointName"/>).
/// </summary>
/// <param name="Kind">Which stage.</param>
/// <param name="Layer">The block, 1-based (Edifice's numbering), for <see cref="PassStageKind.Block"/>; else 0.</param>
/// <param name="Architecture">The model's architecture, which names its blocks.</param>
internal readonly record struct PassStage(PassStageKind Kind, int Layer, ModelArchitecture Architecture)
{
    /// <summary>No stage.</summary>
    public static PassStage None => default;

    /// <summary>
    /// The prefix of the stage's tensors in the checkpoint: <c>input_projection</c>, <c>dual_chunk_block_&lt;l&gt;</c>
    /// (DualChunk.build) or <c>decoder_block_&lt;l&gt;</c> (DecoderOnly), <c>final_norm</c>; "" for <see cref="None"/>.
    /// </summary>
    public string CheckpointName => Kind switch
    {
        PassStageKind.InputProjection => "input_projection",
        PassStageKind.Block => string.Create(CultureInfo.InvariantCulture,
            $"{(Architecture == ModelArchitecture.DecoderOnly ? CheckpointNames.DecoderBlockPrefix : CheckpointNames.DualChunkBlockPrefix)}{Layer}"),
        PassStageKind.FinalNorm => "final_norm",
        _ => "",
    };
}
