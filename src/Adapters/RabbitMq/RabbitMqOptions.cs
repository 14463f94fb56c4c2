using System.ComponentModel.DataAnnotations;

namespace Queue.Adapters.RabbitMq;

public sealed class RabbitMqOptions
{
    public const string Section = "Queue:RabbitMq";

    /// <summary>
    /// AMQP URI, e.g. <c>amqp://user:pass@host:5672/vhost</c>, or <c>amqps://</c> for TLS. Give each
    /// service kind its own user (coordinator, worker, ingress). Never logged.
    /// </summary>
    [Required]
    public string ConnectionString { get; set; } = "amqp://guest:guest@127.0.0.1:5672/";

    /// <summary>Unacknowledged messages one receiver holds at most; set it to the worker's slots. Default 4.</summary>
    [Range(1, 10_000)]
    public ushort Prefetch { get; set; } = 4;

    /// <summary>
    /// Unacknowledged events the leader holds at most: its batch (<c>Queue:Coordinator:EventBatchSize</c>,
    /// 64). With the workers' prefetch instead, a busy phase's reports reached it four at a time and it
    /// fell seconds behind the workers. Default 64.
    /// </summary>
    [Range(1, 10_000)]
    public ushort EventsPrefetch { get; set; } = 64;

    /// <summary>
    /// AMQP heartbeat asked of the broker. A process that stops answering (frozen, a stalled VM) has its
    /// connection closed by the broker after about two missed beats, and every message it held goes
    /// back to the queue: the only lease expiry RabbitMQ has. Default 10 s (RabbitMQ's own is 60 s).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan Heartbeat { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>PEM of the CA that signed the broker's certificate (<c>amqps://</c>). Default: the system's.</summary>
    public string? CaFile { get; set; }

    /// <summary>PEM certificate and key this client presents, for brokers that ask for one.</summary>
    public string? ClientCertificateFile { get; set; }

    public string? ClientKeyFile { get; set; }

    /// <summary>Prefix of queue names, so several engines can share a broker. Default <c>queue.</c>.</summary>
    public string QueuePrefix { get; set; } = "queue.";
}
