namespace DualChunk.Core;

/// <summary>What the model returns (Edifice's output modes).</summary>
public enum OutputMode
{
    /// <summary>The final-normed hidden state of the last position: [B, H]. Edifice's default.</summary>
    LastTimestep = 0,

    /// <summary>Every position: [B, N, H].</summary>
    All = 1,

    /// <summary>The mean over positions of the final-normed states: [B, H].</summary>
    MeanPool = 2,
}
