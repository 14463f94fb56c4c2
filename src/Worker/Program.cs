var builder = WebApplication.CreateBuilder(args);
builder.AddQueueServiceDefaults();
builder.AddQueueAdapters();
builder.AddWorker();

var app = builder.Build();
app.MapQueueDefaultEndpoints();
app.Run();
