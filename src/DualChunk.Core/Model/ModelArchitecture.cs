namespace DualChunk.Core;

/// <summary>
/// Which Edifice model a checkpoint holds. Both use the same dual chunk attention; they differ in the block
/// around it (docs/model.md).
/// </summary>
public enum ModelArchitecture
{
    /// <summary><c>Edifice.Attention.DualChunk.build</c>: LayerNorm before attention and FFN, exact-GELU FFN.</summary>
    DualChunk = 0,

    /// <summary>
    /// <c>Edifice.Transformer.DecoderOnly</c> with <c>attention_type: :dual_chunk</c>: RMSNorm before attention and
    /// FFN, SwiGLU FFN.
    /// </summary>
    DecoderOnly = 1,
}
