using DualChunk.Bench.Peers;

var peers = new IPeer[] { new EnginePeer(1), new EnginePeer(2), new OnnxPeer(1), new TorchPeer(1) };
var configs = PeerConfig.All.Where(c => args.Contains(c.Name)).ToList();
if (configs.Count == 0) configs = [.. PeerConfig.All.Take(3)];
PeersBench.Run(configs, peers, BenchMode.Quick, Console.Out);
